"""The MSB-RNN reproduction's report (docs/reproductions_msb_rnn.rst): the thesis' figures, the
comparisons and their wording, the page's RST tables built from the results JSON, and one test
video's timeline. ``reproduce.py`` runs the experiments and writes the JSON; ``build_tables(json)``
here is what the page holds (a test checks it).
"""

from __future__ import annotations

import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
import common  # noqa: E402

from scalekit.datasets.synthetic import SHOPPING_ACTIONS  # noqa: E402
from scalekit.sequence import clips_from_scores  # noqa: E402

msb_rnn = common.import_script(os.path.join(HERE, "msb_rnn.py"), "msb_rnn_driver")
# Thesis values on the Shopping dataset (mid-point-hit mAP, %), for the direction only.
THESIS_52 = {"two_stream": (75.95, 74.53, 52.48, 67.56, 55.52), "multi_stream": (80.8, 77.71, 54.13, 75.68, 57.09),
             "lstm_backward": (84.39, 81.45, 59.69, 79.29, 70.57), "lstm_forward": (84.86, 84.61, 68.73, 78.6, 70.31),
             "msb_rnn": (89.74, 90.47, 65.56, 82.7, 73.09)}  # Table 5.2 (its LSTM columns: <- then ->)
THESIS_53 = {"crop_stack": (55.29, 71.70), "crop_traj": (57.88, 73.06), "crop_rgb": (40.02, 63.26)}
THESIS_54 = {"two_stream": 65.29, "multi_stream": 69.27, "forward": 77.24, "backward": 75.08, "bidirectional": 80.31}
METRICS = ("midpoint_map", "tiou_map@0.5")
# (name, arm a, arm b, what "a > b" means): arms are (config, read-out); mid-point mAP over test videos.
COMPARISONS = [
    *[(f"lstm_vs_none_{s}", (f"lstm_{s}", "bidirectional"), (f"stream_{s}", "chunk"), f"bi-LSTM beats no LSTM ({n})")
      for s, n in (("crop_stack", "stacked flow"), ("crop_traj", "trajectories"), ("crop_rgb", "frame"))],
    *[(f"fwd_vs_none_{s}", (f"lstm_{s}", "forward"), (f"stream_{s}", "chunk"),
       f"forward read-out beats no LSTM ({n})") for s, n in (("crop_stack", "stacked flow"), ("crop_traj", "trajectories"),
                                                            ("crop_rgb", "frame"))],
    ("traj_vs_stack", ("stream_crop_traj", "chunk"), ("stream_crop_stack", "chunk"), "trajectories beat stacked flow, no LSTM"),
    ("traj_vs_stack_lstm", ("lstm_crop_traj", "bidirectional"), ("lstm_crop_stack", "bidirectional"),
     "trajectories beat stacked flow, bi-LSTM"),
    ("four_vs_two", ("multi_stream", "chunk"), ("two_stream", "chunk"), "four streams beat two, no LSTM"),
    ("four_vs_two_lstm", ("msb_rnn", "bidirectional"), ("two_stream_lstm", "bidirectional"), "four streams beat two, bi-LSTM"),
    ("lstm_vs_none", ("lstm_forward", "forward"), ("multi_stream", "chunk"), "a forward LSTM beats no LSTM"),
    ("bi_vs_forward", ("msb_rnn", "bidirectional"), ("lstm_forward", "forward"), "bi-LSTM beats a forward LSTM"),
    ("bi_vs_backward", ("msb_rnn", "bidirectional"), ("lstm_backward", "backward"), "bi-LSTM beats a backward LSTM"),
    ("forward_vs_backward", ("lstm_forward", "forward"), ("lstm_backward", "backward"), "forward beats backward"),
    ("own_vs_readout_forward", ("lstm_forward", "forward"), ("msb_rnn", "forward"),
     "a forward LSTM of its own beats the bi-LSTM's forward read-out"),
    *[(f"memory_all_vs_k{k}", ("lstm_forward", "forward"), ("lstm_forward", f"forward_k{k}"),
       f"unlimited memory beats k = {k} chunks") for k in msb_rnn.MEMORY_KS],
    ("continuous_vs_trimmed", ("msb_rnn", "bidirectional"), ("msb_rnn_trimmed", "bidirectional"),
     "continuous training beats trimmed, bi-LSTM"),
]
COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189)]


def read_json(path: str):
    with open(path) as f:
        return json.load(f)


def ms(values, digits: int = 1) -> str:
    """``"mean ± half-range"`` over seeds, in % (one seed: the value)."""
    return common.mean_spread(common.seed_stat(values), digits=digits) if len(values) > 1 else f"{100 * values[0]:.{digits}f}"


def table(header, rows) -> str:
    """An RST list-table."""
    lines = [".. list-table::", "   :header-rows: 1", ""]
    for row in [header] + rows:
        lines.append("   * - " + str(row[0]))
        lines += [f"     - {c}" for c in row[1:]]
    return "\n".join(lines) + "\n"


def verdicts(doc: dict, names) -> str:
    """One bullet per comparison: the difference, its bootstrap interval, the seeds' range, the verdict."""
    out = []
    for name in names:
        c = doc["comparisons"][name]
        v = {"a>b": "**holds**", "a<b": "**reversed** (the interval excludes zero the other way)", None: "not resolved"}
        lo, hi = 100 * min(c["per_seed"]), 100 * max(c["per_seed"])
        out.append(f"- {c['what']}: {100 * c['diff']:+.1f} points, 95% interval [{100 * c['low']:+.1f}, "
                   f"{100 * c['high']:+.1f}] over test videos, seeds {lo:+.1f} to {hi:+.1f}: {v[c['holds']]}.")
    return "\n".join(out) + "\n"


def build_tables(doc: dict) -> dict[str, str]:
    """The page's RST blocks (tables and verdicts), from the results JSON alone."""
    r = doc["results"]
    get = lambda arm, tag, metric="midpoint_map": r[arm][tag][metric]  # noqa: E731
    blocks = {}
    rows = [[cls] + [f"{ms(r[arm][tag]['per_class'][cls]) if cls in r[arm][tag]['per_class'] else '-'} "
                     f"({THESIS_52[arm][i]:.1f})"
                     for arm, tag in (("two_stream", "chunk"), ("multi_stream", "chunk"), ("lstm_backward", "backward"),
                                      ("lstm_forward", "forward"), ("msb_rnn", "bidirectional"))]
            for i, cls in enumerate(SHOPPING_ACTIONS)]
    rows.append(["mean (mAP)"] + [ms(get(a, t)) for a, t in (("two_stream", "chunk"), ("multi_stream", "chunk"),
                                                           ("lstm_backward", "backward"), ("lstm_forward", "forward"),
                                                           ("msb_rnn", "bidirectional"))])
    blocks["5.2"] = table(["Action (AP %, thesis in brackets)", "Two-stream", "Multi-stream", "LSTM backward",
                           "LSTM forward", "MSB-RNN"], rows)
    rows = []
    for s, name in (("crop_stack", "Stacked flow (crop)"), ("crop_traj", "Pixel trajectories (crop)"),
                    ("crop_rgb", "Frame (crop)")):
        no, lstm = THESIS_53[s]
        rows.append([name, ms(get(f"stream_{s}", "chunk")), ms(get(f"lstm_{s}", "forward")),
                     ms(get(f"lstm_{s}", "bidirectional")), f"{no:.1f} / {lstm:.1f}"])
    blocks["5.3"] = table(["Stream", "no LSTM", "bi-LSTM's forward read-out", "bi-LSTM", "thesis Shop (no / LSTM)"], rows)
    blocks["5.3_verdicts"] = verdicts(doc, [c[0] for c in COMPARISONS if c[0].startswith(("lstm_vs_none_", "fwd_vs",
                                                                                         "traj_vs"))])
    t = THESIS_54
    rows = [["Two-stream (full frame), no LSTM", ms(get("two_stream", "chunk")), ms(get("two_stream", "chunk", METRICS[1])),
             f"{t['two_stream']:.1f}"],
            ["Multi-stream (4 streams), no LSTM", ms(get("multi_stream", "chunk")),
             ms(get("multi_stream", "chunk", METRICS[1])), f"{t['multi_stream']:.1f}"],
            ["Two-stream + bi-LSTM", ms(get("two_stream_lstm", "bidirectional")),
             ms(get("two_stream_lstm", "bidirectional", METRICS[1])), "\\-"],
            ["Multi-stream + forward LSTM (own model)", ms(get("lstm_forward", "forward")),
             ms(get("lstm_forward", "forward", METRICS[1])), f"{t['forward']:.1f}"],
            ["Multi-stream + backward LSTM (own model)", ms(get("lstm_backward", "backward")),
             ms(get("lstm_backward", "backward", METRICS[1])), f"{t['backward']:.1f}"],
            ["MSB-RNN (bi-directional)", ms(get("msb_rnn", "bidirectional")),
             ms(get("msb_rnn", "bidirectional", METRICS[1])), f"{t['bidirectional']:.1f}"],
            ["(extra) MSB-RNN's forward read-out", ms(get("msb_rnn", "forward")), ms(get("msb_rnn", "forward", METRICS[1])),
             "\\-"],
            ["(extra) MSB-RNN's backward read-out", ms(get("msb_rnn", "backward")),
             ms(get("msb_rnn", "backward", METRICS[1])), "\\-"]]
    blocks["5.4"] = table(["Method", "mid-point mAP", "tIoU@0.5 mAP", "thesis Shop"], rows)
    blocks["5.4_verdicts"] = verdicts(doc, ["four_vs_two", "four_vs_two_lstm", "lstm_vs_none", "bi_vs_forward",
                                            "bi_vs_backward", "forward_vs_backward", "own_vs_readout_forward"])
    rows = []
    for name, label in (("lstm_forward", "Multi-stream + forward LSTM (own model)"),
                        ("msb_rnn", "MSB-RNN's forward read-out"), ("lstm_crop_traj", "Trajectories (crop), read-out"),
                        ("lstm_crop_rgb", "Frame (crop), read-out")):
        rows.append([label] + [ms(get(name, f"forward_k{k}")) for k in msb_rnn.MEMORY_KS] + [ms(get(name, "forward"))])
    blocks["5.7"] = table(["forward LSTM, memory k ="] + [str(k) for k in msb_rnn.MEMORY_KS] + ["all"], rows)
    blocks["5.7_verdicts"] = verdicts(doc, [f"memory_all_vs_k{k}" for k in msb_rnn.MEMORY_KS])
    d = doc["data"]
    rows = [[SHOPPING_ACTIONS[int(c)], str(v["segments"]), f"{v['mean']:.2f}", str(v["median"]), str(v["max"])]
            for c, v in d["action_chunks"].items()]
    blocks["lengths"] = table(["Action (training split)", "segments", "mean chunks", "median", "max"], rows)
    rows = [["k (chunks of past labels)"] + [str(k) for k in d["entropy_k"]],
            ["validation labels' cross-entropy, bits per chunk"] + [f"{h:.3f}" for h in d["entropy_bits"]]]
    blocks["entropy"] = table(rows[0], rows[1:])
    b = d["previous_action_began"]
    blocks["context"] = (f"Over the {b['chunks']} action chunks of the training split that have an earlier action, that "
                         f"action began a median {b['median']:.0f} chunks back (90th percentile {b['p90']:.0f}, "
                         f"at most {b['max']}).\n")
    rows = [[label, ms(get(arm, tag)), ms(get(arm, tag, METRICS[1]))]
            for label, arm, tag in (("Continuous video, bi-LSTM", "msb_rnn", "bidirectional"),
                                    ("Trimmed clips, bi-LSTM", "msb_rnn_trimmed", "bidirectional"),
                                    ("Continuous video, forward read-out", "msb_rnn", "forward"),
                                    ("Trimmed clips, forward read-out", "msb_rnn_trimmed", "forward"))]
    blocks["5.4.3"] = table(["LSTM trained on", "mid-point mAP", "tIoU@0.5 mAP"], rows)
    blocks["5.4.3_verdicts"] = verdicts(doc, ["continuous_vs_trimmed"])
    sel = doc["selection"]
    rows = [[str(it), f"{v['flow_error_1_frames_px']:.3f}", f"{v['flow_error_3_frames_px']:.3f}",
             "**chosen**" if int(it) == sel["flow_iterations"]["chosen"] else "\\-"]
            for it, v in sel["flow_iterations"]["candidates"].items()]
    blocks["flow"] = table(["TorchFlow iterations", "hand flow error, 1 frame (px)", "3 frames (px)", "validation's choice"], rows)
    rows = [[arm, ", ".join(str(e) for e in v["epoch"]), ms(v["val_midpoint_map"])] for arm, v in sel["lstm_epoch"].items()]
    blocks["epochs"] = table(["Configuration", "epoch chosen, per seed", "validation mid-point mAP"], rows)
    return blocks


def timeline(path: str, seed_dir: str, gt: dict, vid: str | None = None, width: int = 760) -> str:
    """One test video: ground truth, MSB-RNN chunk scores per class, top detected clips."""
    from PIL import Image, ImageDraw

    saved = torch.load(os.path.join(seed_dir, "test_scores.pt"), weights_only=True)["scores"]["msb_rnn"]["bidirectional"]
    vid = vid or sorted(saved)[0]
    scores = saved[vid].numpy()  # [T, C + 1]
    n, c = scores.shape[0], scores.shape[1] - 1
    frames, left, row_h = n * 6, 130, 14
    image = Image.new("RGB", (width, 20 + row_h * (2 * c + 1) + 3 * 18 + 20), "white")
    draw = ImageDraw.Draw(image)
    x = lambda f: left + (width - left - 10) * f / frames  # noqa: E731
    y = 8
    draw.text((4, y), f"video {vid}", fill="black")
    y += 16
    draw.text((4, y), "ground truth", fill="black")
    for i in range(n + 1):
        draw.line([x(i * 6), y - 2, x(i * 6), y + row_h * (c + 1) + 8], fill=(235, 235, 235))
    for label, (a, b) in zip(gt[vid]["labels"].tolist(), gt[vid]["segments"].tolist()):
        draw.rectangle([x(a), y, x(b + 1), y + row_h - 2], fill=COLOURS[label % 5])
    y += row_h + 8
    for k in range(c):
        draw.text((4, y), SHOPPING_ACTIONS[k][:18], fill=COLOURS[k % 5])
        for i in range(n):
            shade = tuple(int(255 - float(scores[i, k + 1]) * (255 - ch)) for ch in COLOURS[k % 5])
            draw.rectangle([x(i * 6), y, x(i * 6 + 6), y + row_h - 2], fill=shade)
        y += row_h
    y += 8
    draw.text((4, y), "clips, score >= 0.5", fill="black")
    clips = clips_from_scores(scores[:, 1:], chunk_len=6)
    taken = []
    for s, k, a, b in sorted(((s, k, a, b) for k, cl in clips.items() for a, b, s in cl), reverse=True):
        if s < 0.5:
            break
        lane = next((li for li in range(3) if all(b <= ta or a >= tb for ta, tb, tl in taken if tl == li)), None)
        if lane is not None:
            taken.append((a, b, lane))
            draw.rectangle([x(a), y + lane * 12, x(b), y + lane * 12 + 10], fill=COLOURS[k % 5], outline="black")
    y += 3 * 12 + 6
    draw.text((left, y), "0", fill="black")
    draw.text((width - 60, y), f"{frames} frames", fill="black")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    image.crop((0, 0, width, y + 16)).save(path, optimize=True)
    return vid
