"""The MSB-RNN reproduction table (docs/reproductions_msb_rnn.rst): the driver with
``--ablations`` for several training seeds on one synthetic dataset, then the tables
(mean and range over seeds) and one test video's timeline.

    python examples/msb_rnn/reproduce.py --out runs/msb_rnn_repro --seeds 0 1 2

Data and motion are computed once and shared by every seed; a second run reuses every
cached stage and only rebuilds the tables and the figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
import common  # noqa: E402

from scalekit.datasets.synthetic import SHOPPING_ACTIONS  # noqa: E402
from scalekit.sequence import clips_from_scores  # noqa: E402
from scalekit.video import chunk_centres  # noqa: E402

msb_rnn = common.import_script(os.path.join(HERE, "msb_rnn.py"), "msb_rnn_driver")

# Thesis values on the Shopping dataset (mid-point-hit mAP, %), for the direction only.
THESIS_53 = {"crop_stack": (55.29, 71.70), "crop_traj": (57.88, 73.06), "crop_rgb": (40.02, 63.26)}
THESIS_54 = {"two_stream": 65.29, "multi_stream": 69.27, "forward": 77.24, "backward": 75.08, "bidirectional": 80.31}
COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189)]


def fmt(values) -> str:
    v = 100 * np.asarray(values, dtype=float)
    return f"{v.mean():.1f} ({v.min():.1f}-{v.max():.1f})" if len(v) > 1 else f"{v.mean():.1f}"


def table(header, rows) -> str:
    """An RST list-table."""
    lines = [".. list-table::", "   :header-rows: 1", ""]
    for row in [header] + rows:
        lines.append("   * - " + str(row[0]))
        lines += [f"     - {c}" for c in row[1:]]
    return "\n".join(lines) + "\n"


def build_tables(results: list[dict], metric: str = "midpoint_map") -> str:
    get = lambda *path: [r["results"][path[0]] if len(path) == 1 else _dig(r["results"], path) for r in results]  # noqa: E731
    out = []
    rows = []
    for s, name in (("crop_stack", "Stacked flow (crop)"), ("crop_traj", "Pixel trajectories (crop)"),
                    ("crop_rgb", "Frame (crop)")):
        no, lstm = THESIS_53[s]
        rows.append([name, fmt(get(f"stream_{s}", metric)), fmt(get(f"lstm_{s}", "forward", metric)),
                     fmt(get(f"lstm_{s}", "bidirectional", metric)), f"{no:.1f} / {lstm:.1f}"])
    out.append("Table 5.3\n\n" + table(["Stream", "no LSTM", "LSTM (forward)", "bi-LSTM", "thesis Shop (no / LSTM)"], rows))
    rows = [["Two-stream (full frame), no LSTM", fmt(get("two_stream", "chunk", metric)), f"{THESIS_54['two_stream']:.1f}"],
            ["Multi-stream (4 streams), no LSTM", fmt(get("multi_stream", "chunk", metric)), f"{THESIS_54['multi_stream']:.1f}"],
            ["Two-stream + bi-LSTM", fmt(get("two_stream_lstm", "bidirectional", metric)), "-"],
            ["Multi-stream + LSTM (forward)", fmt(get("msb_rnn", "forward", metric)), f"{THESIS_54['forward']:.1f}"],
            ["Multi-stream + LSTM (backward)", fmt(get("msb_rnn", "backward", metric)), f"{THESIS_54['backward']:.1f}"],
            ["MSB-RNN (bi-directional)", fmt(get("msb_rnn", "bidirectional", metric)), f"{THESIS_54['bidirectional']:.1f}"]]
    out.append("Table 5.4\n\n" + table(["Method", "mAP", "thesis Shop"], rows))
    rows = []
    for name, label in (("lstm_crop_traj", "Trajectories (crop) + LSTM"), ("lstm_crop_rgb", "Frame (crop) + LSTM"),
                        ("msb_rnn", "Multi-stream + LSTM")):
        rows.append([label] + [fmt(get(name, f"forward_k{k}", metric)) for k in msb_rnn.MEMORY_KS]
                    + [fmt(get(name, "forward", metric))])
    out.append("Fig. 5.7\n\n" + table(["forward LSTM, memory k ="] + [str(k) for k in msb_rnn.MEMORY_KS] + ["all"], rows))
    rows = [["Continuous video", fmt(get("msb_rnn", "forward", metric)), fmt(get("msb_rnn", "bidirectional", metric))],
            ["Trimmed clips (reset at action boundaries)", fmt(get("msb_rnn_trimmed", "forward", metric)),
             fmt(get("msb_rnn_trimmed", "bidirectional", metric))]]
    out.append("Section 5.4.3 (trimmed training)\n\n" + table(["LSTM trained on", "forward", "bi-directional"], rows))
    return "\n".join(out)


def _dig(d, path):
    for p in path:
        d = d[p]
    return d


def timeline(path: str, seed_dir: str, gt: dict, vid: str | None = None, width: int = 760) -> str:
    """One test video: ground truth, MSB-RNN chunk scores per class, top detected clips."""
    from PIL import Image, ImageDraw

    saved = torch.load(os.path.join(seed_dir, "test_scores.pt"), weights_only=True)
    vid = vid or sorted(saved["scores"])[0]
    scores = saved["scores"][vid].numpy()  # [T, C + 1]
    n, c = scores.shape[0], scores.shape[1] - 1
    frames = n * 6
    left, row_h = 130, 14
    height = 20 + row_h * (2 * c + 1) + 3 * 18 + 20
    image = Image.new("RGB", (width, height), "white")
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
            v = float(scores[i, k + 1])
            shade = tuple(int(255 - v * (255 - ch)) for ch in COLOURS[k % 5])
            draw.rectangle([x(i * 6), y, x(i * 6 + 6), y + row_h - 2], fill=shade)
        y += row_h
    y += 8
    draw.text((4, y), "clips, score >= 0.5", fill="black")
    clips = clips_from_scores(scores[:, 1:], chunk_len=6)
    top = sorted(((s, k, a, b) for k, cl in clips.items() for a, b, s in cl), reverse=True)
    taken = []
    for s, k, a, b in top:
        if s < 0.5:
            break
        lane = next((li for li in range(3) if all(b <= ta or a >= tb for ta, tb, tl in taken if tl == li)), None)
        if lane is None:
            continue
        taken.append((a, b, lane))
        draw.rectangle([x(a), y + lane * 12, x(b), y + lane * 12 + 10], fill=COLOURS[k % 5], outline="black")
    y += 3 * 12 + 6
    draw.text((left, y), "0", fill="black")
    draw.text((width - 60, y), f"{frames} frames", fill="black")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    image.crop((0, 0, width, y + 16)).save(path, optimize=True)
    return vid


def diagnostics(out: str, args: dict, max_videos: int = 4) -> dict:
    """Synthetic data only: how often the tracked box holds the hand, and TorchFlow's error at the
    hand for 1- and 3-frame displacements (what stacked flow and pixel trajectories rely on)."""
    from scalekit.datasets.synthetic import make_synthetic_shopping
    from scalekit.video import TorchFlow

    split = json.load(open(os.path.join(out, "data", "split.json")))
    flow = TorchFlow(levels=args["flow_levels"], iterations=args["flow_iterations"])
    inside, errors, motion = [], {1: [], 3: []}, {1: [], 3: []}
    for i, vid in enumerate(split["train"] + split["test"]):
        if vid not in split["test"][:max_videos]:
            continue
        v = make_synthetic_shopping(num_chunks=args["chunks"], size=tuple(args["size"]), seed=args["data_seed"] * 10_000 + i,
                                    num_distractors=args["distractors"])
        boxes = torch.load(os.path.join(out, "motion", f"{vid}.pt"), weights_only=True)["value"]["boxes"]
        centres = chunk_centres(len(boxes), 6)
        hand = v["hand"][centres]
        inside.append((hand[:, 0] >= boxes[:, 0]) & (hand[:, 0] < boxes[:, 2]) & (hand[:, 1] >= boxes[:, 1])
                      & (hand[:, 1] < boxes[:, 3]))
        for c, label in zip(centres.tolist(), v["chunk_labels"].tolist()):
            if label in (3, 4, 5) and c + 3 < v["frames"].shape[0]:  # the hand moves, the actor stands
                x, y = v["hand"][c].round().long().tolist()
                for d in (1, 3):
                    est = flow(v["frames"][c], v["frames"][c + d])[:, y, x]
                    true = v["hand"][c + d] - v["hand"][c]
                    errors[d].append(float((est - true).norm()))
                    motion[d].append(float(true.norm()))
    return {"hand_in_box": float(torch.cat(inside).float().mean()),
            **{f"flow_error_{d}_frames_px": float(np.median(e)) for d, e in errors.items()},
            **{f"hand_motion_{d}_frames_px": float(np.median(m)) for d, m in motion.items()}}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/msb_rnn_repro")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--figure", default=None, help="where to draw the timeline PNG (default: <out>/timeline.png)")
    p.add_argument("driver_args", nargs=argparse.REMAINDER, help="after --: more arguments for msb_rnn.py")
    args = p.parse_args(argv)
    extra = [a for a in args.driver_args if a != "--"]
    base = ["--out", args.out, "--videos", "20", "--test-videos", "8", "--chunks", "32", "--ablations"] + extra
    start = time.perf_counter()
    results, walls = [], []
    for seed in args.seeds:
        t = time.perf_counter()
        results.append(msb_rnn.main(base + ["--seed", str(seed)]))
        walls.append(time.perf_counter() - t)
    total = time.perf_counter() - start
    gt, _, _ = msb_rnn.load_dataset(os.path.join(args.out, "data"))
    text = build_tables(results)
    text_tiou = build_tables(results, "tiou_map@0.5")
    figure = args.figure or os.path.join(args.out, "timeline.png")
    vid = timeline(figure, os.path.join(args.out, f"seed{args.seeds[0]}"), gt)
    diag = diagnostics(args.out, results[0]["args"]) if not results[0]["args"].get("data") else {}
    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
               f"{os.getloadavg()[0]:.1f}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    report = (f"seeds {args.seeds}; wall {total:.0f} s this run (per seed: {', '.join(f'{w:.0f}' for w in walls)} s); "
              f"{machine}\n\nMid-point-hit mAP (%), mean (min-max) over seeds\n\n{text}\n"
              f"tIoU@0.5 mAP (%)\n\n{text_tiou}\nTimeline: {figure} (video {vid})\nDiagnostics: {json.dumps(diag)}\n")
    with open(os.path.join(args.out, "table.rst"), "w") as f:
        f.write(report)
    with open(os.path.join(args.out, "results_all.json"), "w") as f:
        json.dump({"seeds": args.seeds, "walls": walls, "diagnostics": diag, "results": [r["results"] for r in results]}, f, indent=1)
    print(report)


if __name__ == "__main__":
    main()
