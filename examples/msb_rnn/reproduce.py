"""The MSB-RNN reproduction tables (docs/reproductions_msb_rnn.rst): the driver with ``--ablations``
for several training seeds on one synthetic dataset split by subject, the settings chosen on the
validation split, paired bootstrap intervals over test videos, the data's action lengths and grammar
(Fig. 5.7's knee), one results JSON and the page's RST tables generated from it.

    make repro-msb-rnn      # = python examples/msb_rnn/reproduce.py --seeds 0 1 2 3 4 --json ... --tables ...

Data and motion are computed once and shared by every seed; a second run reuses every cached stage
and only recomputes the statistics, the tables and the figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections import Counter

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
import common  # noqa: E402

from scalekit.datasets.synthetic import SHOPPING_ACTIONS, make_synthetic_shopping  # noqa: E402
from scalekit.evaluation import midpoint_map, paired_bootstrap  # noqa: E402
from scalekit.video import TorchFlow, chunk_centres  # noqa: E402

msb_rnn = common.import_script(os.path.join(HERE, "msb_rnn.py"), "msb_rnn_driver")
report = common.import_script(os.path.join(HERE, "report.py"), "msb_rnn_report")
COMPARISONS, METRICS, build_tables, read_json, timeline = (report.COMPARISONS, report.METRICS, report.build_tables,
                                                            report.read_json, report.timeline)

BASE = ["--videos", "20", "--val-videos", "8", "--test-videos", "12", "--videos-per-subject", "4", "--chunks", "32",
        "--ablations"]


def choose_flow_iterations(out: str, args: dict, candidates, max_videos: int = 4) -> dict:
    """Validation split only: TorchFlow's median error at the hand (the synthetic ground truth) for 1- and
    3-frame displacements (what stacked flow and the trajectories' far channels need), per candidate; the
    smallest mean of the two wins (ties: fewer iterations)."""
    split, subjects = (read_json(os.path.join(out, "data", f"{name}.json")) for name in ("split", "subjects"))
    pairs = []
    for vid in split["val"][:max_videos]:
        v = make_synthetic_shopping(args["chunks"], size=tuple(args["size"]), seed=args["data_seed"] * 10_000 + int(vid[3:]),
                                    num_distractors=args["distractors"], subject=subjects[vid])
        for c, label in zip(chunk_centres(v["frames"].shape[0] // 6, 6).tolist(), v["chunk_labels"].tolist()):
            if label in (3, 4, 5) and c + 3 < v["frames"].shape[0]:  # the hand moves, the actor stands
                pairs += [(v["frames"][c], v["frames"][c + d], v["hand"][c], v["hand"][c + d] - v["hand"][c], d)
                          for d in (1, 3)]
    found = {}
    for it in candidates:
        flow, errors = TorchFlow(levels=args["flow_levels"], iterations=it), {1: [], 3: []}
        for a, b, at, true, d in pairs:
            x, y = at.round().long().tolist()
            errors[d].append(float((flow(a, b)[:, y, x] - true).norm()))
        found[str(it)] = {f"flow_error_{d}_frames_px": float(np.median(e)) for d, e in errors.items()}
    chosen = min(candidates, key=lambda it: (sum(found[str(it)].values()), it))
    return {"candidates": found, "chosen": int(chosen), "pairs": len(pairs), "videos": split["val"][:max_videos]}


def label_sequences(gt: dict, vids: list, chunk_len: int, num_chunks: int) -> list[list[int]]:
    """Per-chunk labels (0 background, class + 1) from the ground truth."""
    seqs = []
    for vid in vids:
        seq = [0] * num_chunks
        for c, (a, b) in zip(gt[vid]["labels"].tolist(), gt[vid]["segments"].tolist()):
            seq[int(a) // chunk_len: (int(b) + 1) // chunk_len] = [int(c) + 1] * ((int(b) + 1 - int(a)) // chunk_len)
        seqs.append(seq)
    return seqs


def data_stats(gt: dict, split: dict, chunk_len: int, num_chunks: int, ks=range(9)) -> dict:
    """What an LSTM's memory can use, measured on the labels: action lengths in chunks (training split);
    for each action chunk, how many chunks back the previous action began (the grammar's cue: retract
    follows hand in shelf, which follows reach); and the validation labels' cross-entropy (bits per chunk)
    under an order-k Markov model of the training labels (add-1/2 smoothing): how far back the past
    labels keep predicting the next one."""
    train, val = (label_sequences(gt, split[p], chunk_len, num_chunks) for p in ("train", "val"))
    lengths, back = {}, []
    for seq in train:
        starts = [t for t in range(len(seq)) if seq[t] and (t == 0 or seq[t - 1] != seq[t])]
        for t0 in starts:
            t1 = t0
            while t1 + 1 < len(seq) and seq[t1 + 1] == seq[t0]:
                t1 += 1
            lengths.setdefault(seq[t0] - 1, []).append(t1 - t0 + 1)
            before = [s for s in starts if s < t0]
            if before:
                back += [t - before[-1] for t in range(t0, t1 + 1)]
    classes, entropy = len(SHOPPING_ACTIONS) + 1, []
    for k in ks:
        joint, ctx = Counter(), Counter()
        for seq in train:
            for t in range(k, len(seq)):
                joint[tuple(seq[t - k: t + 1])] += 1
                ctx[tuple(seq[t - k: t])] += 1
        bits = [-np.log2((joint[tuple(seq[t - k: t + 1])] + 0.5) / (ctx[tuple(seq[t - k: t])] + 0.5 * classes))
                for seq in val for t in range(max(ks), len(seq))]  # the same chunks for every k
        entropy.append(float(np.mean(bits)))
    return {"action_chunks": {str(c): {"segments": len(v), "mean": float(np.mean(v)), "median": float(np.median(v)),
                                       "max": int(max(v))} for c, v in sorted(lengths.items())},
            "previous_action_began": {"median": float(np.median(back)), "p90": float(np.quantile(back, 0.9)),
                                      "max": int(max(back)), "chunks": len(back)},
            "entropy_k": list(ks), "entropy_bits": entropy}


def bootstrap(out: str, seeds, gt: dict, test: list, resamples: int) -> dict:
    """Every comparison's paired bootstrap over test videos (the same resamples for all)."""
    saved = [torch.load(os.path.join(out, f"seed{s}", "test_scores.pt"), weights_only=True)["scores"] for s in seeds]
    dets, memo = {}, {}

    def metric(arm, idx):  # arm = (seed index, config, read-out)
        key = (arm, idx.tobytes())
        if key not in memo:
            if arm not in dets:
                scores = saved[arm[0]][arm[1]][arm[2]]
                dets[arm] = [msb_rnn.detections(scores[v], 6) for v in test]
            picked = {f"{j}": dets[arm][i] for j, i in enumerate(idx.tolist())}
            truth = {f"{j}": gt[test[i]] for j, i in enumerate(idx.tolist())}
            memo[key] = midpoint_map(picked, truth, inclusive_end=True, classes=list(range(len(SHOPPING_ACTIONS))))["mAP"]
        return memo[key]

    found = {}
    for name, a, b, what in COMPARISONS:
        found[name] = {"what": what, "a": list(a), "b": list(b),
                       **paired_bootstrap(metric, [(i, *a) for i in range(len(seeds))],
                                          [(i, *b) for i in range(len(seeds))], len(test), resamples=resamples)}
    return found


def hand_in_box(out: str, args: dict, test: list, subjects: dict) -> float:
    """Test split: how often the tracked box holds the hand (what the cropped streams rely on)."""
    inside = []
    for vid in test:
        v = make_synthetic_shopping(args["chunks"], size=tuple(args["size"]), seed=args["data_seed"] * 10_000 + int(vid[4:]),
                                    num_distractors=args["distractors"], subject=subjects[vid])
        boxes = torch.load(os.path.join(out, "motion", f"{vid}.pt"), weights_only=True)["value"]["boxes"]
        hand = v["hand"][chunk_centres(len(boxes), 6)]
        inside.append((hand[:, 0] >= boxes[:, 0]) & (hand[:, 0] < boxes[:, 2]) & (hand[:, 1] >= boxes[:, 1])
                      & (hand[:, 1] < boxes[:, 3]))
    return float(torch.cat(inside).float().mean())


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/msb_rnn_repro")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--figure", default=None, help="the timeline PNG (default: <out>/timeline.png)")
    p.add_argument("--json", default=None, help="the results JSON (default: <out>/results.json)")
    p.add_argument("--tables", default=None, help="the page's RST blocks (default: <out>/tables.rst)")
    p.add_argument("--flow-candidates", type=int, nargs="+", default=[3, 5, 8], help="TorchFlow iterations to choose from")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples of the test videos")
    own, extra = common.split_passthrough(sys.argv[1:] if argv is None else argv)
    args = p.parse_args(own)
    start, base = time.perf_counter(), ["--out", args.out] + BASE + extra
    msb_rnn.main(base + ["--stages", "data"])
    first = msb_rnn.parse_args(base)
    flow = choose_flow_iterations(args.out, vars(first), args.flow_candidates)
    base += ["--flow-iterations", str(flow["chosen"])]
    results, walls = [], []
    for seed in args.seeds:
        t = time.perf_counter()
        results.append(msb_rnn.main(base + ["--seed", str(seed)]))
        walls.append(time.perf_counter() - t)
    gt, _, split = msb_rnn.load_dataset(os.path.join(args.out, "data"))
    subjects = read_json(os.path.join(args.out, "data", "subjects.json"))
    arms = {arm: {tag: {m: [r["results"][arm][tag][m] for r in results] for m in METRICS}
                  | {"per_class": {c: [r["results"][arm][tag]["per_class"][c] for r in results]
                                   for c in results[0]["results"][arm][tag]["per_class"]}}
                  for tag in results[0]["results"][arm] if tag != "selection"} for arm in results[0]["results"]}
    epochs = {arm: {"epoch": [r["results"][arm]["selection"]["epoch"] for r in results],
                    "val_midpoint_map": [r["results"][arm]["selection"]["val"] for r in results]}
              for arm in results[0]["results"] if "selection" in results[0]["results"][arm]}
    doc = {"command": "make repro-msb-rnn", "argv": base, "seeds": args.seeds,
           "splits": {part: {"videos": len(split[part]), "subjects": sorted({subjects[v] for v in split[part]})}
                      for part in ("train", "val", "test")},
           "selection": {"flow_iterations": flow, "lstm_epoch": epochs},
           "results": arms, "comparisons": bootstrap(args.out, args.seeds, gt, split["test"], args.resamples),
           "data": data_stats(gt, split, first.chunk_len, first.chunks),
           "diagnostics": {"hand_in_box_test": hand_in_box(args.out, vars(first), split["test"], subjects)},
           "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
                      f"threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f} at the end",
           "seed_walls_s": walls}
    figure = args.figure or os.path.join(args.out, "timeline.png")
    doc["timeline_video"] = timeline(figure, os.path.join(args.out, f"seed{args.seeds[0]}"), gt)
    doc["wall_s"] = time.perf_counter() - start
    path = args.json or os.path.join(args.out, "results.json")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
    with open(path) as f:  # the tables come from the JSON as written (the docs test recomputes them so)
        blocks = build_tables(json.load(f))
    text = "\n".join(f".. block {name}\n\n{block}" for name, block in blocks.items())
    with open(args.tables or os.path.join(args.out, "tables.rst"), "w") as f:
        f.write(text)
    print(text)
    print(f"wall {doc['wall_s']:.0f} s; JSON {path}")
    return doc


if __name__ == "__main__":
    main()
