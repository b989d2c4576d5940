"""Table 2.1 (thesis §2.5) and the 2 x 2 of {pretrained, from scratch} x {MST, SNIP}, at equal budgets.

Every arm is ``examples/snip/train.py`` on the scale-true synthetic set
(``--render scale_true``), with the single-level detector on the premise
experiment's CNN-B (``--backbone premise``), the same number of SGD
iterations at the same batch size (``--iterations``, AP also at a quarter and
half of it: ``--eval-at``) and tested at one scale, 1400x2000 in thesis
pixels, every detection kept (``--test-level``), on small objects (AP_S):

* ``800_all``, ``1400_all``: single scale, every object (Fig. 2.5.1);
* ``1400_lt80``: 1400x2000, objects over 80 px ignored (Fig. 2.5.2);
* ``mst``: the three SNIP scales, every object at every scale;
* ``snip``: the same with SNIP's ranges, warm-started as MST for
  ``--warm-start-epochs`` (§2.7.1);
* ``mst_scratch``, ``snip_scratch``: the last two from random weights; the
  interaction (SNIP - MST pretrained) - (SNIP - MST from scratch) is the
  mechanism SNIP claims (a pretrained network's scale, §2.3).

``--table sniper`` runs SNIPER's tables the same way (``examples/sniper/train.py``, the
same budget, data, backbone and test), beside ``snip``:

* ``sniper``: 512x512 chips at three scales with negative chips mined by an RPN-only run of
  ``--iterations / 4`` iterations, counted in the budget (the thesis trains its RPN 2 epochs
  before the 7 of the detector: 22 %); the detector trains the other three quarters;
* ``sniper_noneg``: positive chips only, every iteration the detector's (Table 3.2);
* ``sniper_2s``: without the 3x scale (Table 3.2's "2 scales"; tested as the others);
* Table 3.1: the RPN's recall by object size with and without negatives;
* Table 3.3: ``sniper`` - ``snip`` at equal iterations, with the pixels each trains on per image
  and its training images (chips) per second.

``--table fpn`` is Table 2.1's secondary arm: ``mst_fpn`` and ``snip_fpn`` are ``mst`` and ``snip``
with an FPN on CNN-B's three stages (``--backbone premise_fpn``), whose RoI pooling already picks a
level by the RoI's size; ``(snip - mst) single-level - (snip - mst) FPN`` says how much of SNIP's
gain FPN's own scale normalisation takes away (the thesis' detector is single-level and has no
such row; ``mst``, ``snip`` are shared with Table 2.1's runs).

``--table warm``: ``snip_nowarm`` is ``snip`` with its ranges on from the first iteration
(``--warm-start-epochs 0``), beside ``snip`` (warm-started as MST, shared with Table 2.1's runs).

The pretrained arms start from ``--init`` (CNN-B of ``examples/snip/premise.py``,
``make repro-premise`` writes it). Each run is its own process in
``OUT/<arm>_s<seed>`` (a finished run is not rerun); ``--jobs`` runs that many
at once from one queue, seed by seed. ``--draws 0 1`` repeats every run on a
second draw of the synthetic set (other images, the same distribution;
``OUT/data_d1``, ``OUT/<arm>_d1_s<seed>``). Statistics: per arm the mean and range over
seeds (and draws); each comparison a paired difference with a bootstrap interval over test
images (:func:`scalekit.evaluation.bootstrap_coco_ap` on small objects; the same
resamples for every run of a draw, draws resampled independently, each resample's AP
averaged over seeds and draws), holding only where the interval excludes zero. Writes ``OUT/results.json`` and
``OUT/table.rst`` (``--table sniper``, ``fpn`` or ``warm``: ``results_<table>.json``, ``table_<table>.rst``).
``--replication A.json B.json`` runs nothing and prints each comparison's difference and direction in
those results side by side (e.g. one file per data draw), and whether the directions agree.

    python examples/snip/reproduce.py --init runs/premise_repro/cnn_b_scale_true_seed0.pt --out runs/snip_repro
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import common  # noqa: E402

TRAIN = os.path.join(HERE, "train.py")
SNIPER_TRAIN = os.path.join(os.path.dirname(HERE), "sniper", "train.py")
TEST_LEVEL = ["--test-level", "1400", "2000"]
# (arm, flags, pretrained)
ARMS = (("800_all", ["--recipe", "single", "--scale", "800", "1200"], True),
        ("1400_all", ["--recipe", "single", "--scale", "1400", "2000"], True),
        ("1400_lt80", ["--recipe", "single", "--scale", "1400", "2000", "--train-range", "0", "80"], True),
        ("mst", ["--recipe", "multiscale"], True),
        ("snip", ["--recipe", "snip"], True),
        ("mst_scratch", ["--recipe", "multiscale"], False),
        ("snip_scratch", ["--recipe", "snip"], False))
# SNIPER's tables (Tables 3.1-3.3); "--rpn-iterations" is set from the budget by run_arm
SNIPER_ARMS = (("snip", ["--recipe", "snip"], True),
               ("sniper", ["--rpn-iterations"], True),
               ("sniper_noneg", ["--no-negatives"], True),
               ("sniper_2s", ["--rpn-iterations", "--two-scales"], True))
# Table 2.1's secondary arm: the same recipes on an FPN (RoIs pooled from the level their size picks)
FPN_ARMS = (ARMS[3], ARMS[4],
            ("mst_fpn", ["--recipe", "multiscale", "--backbone", "premise_fpn"], True),
            ("snip_fpn", ["--recipe", "snip", "--backbone", "premise_fpn"], True))
# SNIP's warm start (thesis §2.7.1: ranges on after 3 of 7 epochs trained as MST) against none
WARM_ARMS = (ARMS[4], ("snip_nowarm", ["--recipe", "snip", "--warm-start-epochs", "0"], True))
TABLES = {"2.1": ARMS, "sniper": SNIPER_ARMS, "fpn": FPN_ARMS, "warm": WARM_ARMS}
ALL_ARMS = tuple({a[0]: a for arms in TABLES.values() for a in arms}.values())  # each arm once, in table order
# the thesis' directions (Table 2.1, §2.5; Tables 3.2, 3.3): a > b
COMPARISONS = (("1400_all", "800_all"), ("800_all", "1400_lt80"), ("snip", "mst"), ("snip", "1400_all"),
               ("snip_scratch", "mst_scratch"), ("sniper", "sniper_noneg"), ("sniper", "sniper_2s"),
               ("sniper", "snip"), ("snip_fpn", "mst_fpn"), ("snip", "snip_nowarm"))
THESIS_APS = {"800_all": 19.6, "1400_all": 19.9, "1400_lt80": 16.4, "mst": 19.5, "snip": 21.4}  # Table 2.1


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog="\n".join(__doc__.splitlines()[2:]),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    d = "(default: %(default)s)"
    p.add_argument("--init", help="CNN-B checkpoint of examples/snip/premise.py (the pretrained arms; required to run)")
    p.add_argument("--out", default="runs/snip_repro", help=f"output folder {d}")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help=f"training seeds {d}")
    p.add_argument("--draws", type=int, nargs="+", default=[0],
                   help="draws of the synthetic set, each every seed's runs (draw 0 in OUT/data and OUT/<arm>_s<seed>, "
                        f"draw N in OUT/data_dN and OUT/<arm>_dN_s<seed>) {d}")
    p.add_argument("--jobs", type=int, default=2, help=f"training runs side by side (one queue, seed by seed) {d}")
    p.add_argument("--table", choices=sorted(TABLES), default="2.1",
                   help="Table 2.1's arms, SNIPER's tables (with snip; results_sniper.json, table_sniper.rst) or "
                        "the FPN arm (with mst and snip; results_fpn.json, table_fpn.rst) or SNIP without its warm "
                        f"start (with snip; results_warm.json, table_warm.rst) {d}")
    p.add_argument("--arms", nargs="+", choices=[a for a, _, _ in ALL_ARMS],
                   help="arms to run (default: all of --table's)")
    p.add_argument("--iterations", type=int, default=800,
                   help=f"SGD iterations of every arm, batch 4 (800: about 7 epochs of SNIP's training set) {d}")
    p.add_argument("--warm-start-epochs", type=int, default=3,
                   help=f"snip: epochs trained as MST first (the thesis: 3 of 7, §2.7.1) {d}")
    p.add_argument("--synthetic", type=int, nargs=2, default=(120, 150), metavar=("TRAIN", "TEST"),
                   help=f"synthetic images {d}")
    p.add_argument("--resamples", type=int, default=1000, help=f"bootstrap resamples over test images {d}")
    p.add_argument("--figure", help="also draw AP_S against iterations, one line per arm, into this PNG")
    p.add_argument("--replication", nargs="+", metavar="RESULTS_JSON",
                   help="run nothing: print the table of each comparison's verdict in these results files (e.g. "
                        "one per data draw) side by side, and whether they agree")
    p.add_argument("--extra", nargs=argparse.REMAINDER, default=[],
                   help="arguments for every run of train.py (e.g. --extra --max-iters 2 for a smoke test)")
    args = p.parse_args(argv)
    if args.replication:
        return args
    if args.init is None:
        p.error("--init is required (the CNN-B checkpoint of `make repro-premise`), unless --replication is given")
    if not os.path.exists(args.init):
        p.error(f"--init {args.init} does not exist; make it with `make repro-premise` (examples/snip/premise.py)")
    if args.iterations < 4:
        p.error("--iterations must be at least 4 (AP is also taken at a quarter and half of it)")
    if any(not 0 <= n < 1000 for n in args.draws):
        p.error(f"--draws must be in [0, 1000), got {args.draws}")
    args.arms = args.arms or [a for a, _, _ in TABLES[args.table]]
    return args


def run_name(arm: str, draw: int, seed: int) -> str:
    """A run's folder in ``--out``: ``<arm>_s<seed>`` on draw 0 (as before draws), ``<arm>_d<draw>_s<seed>``."""
    return f"{arm}_s{seed}" if draw == 0 else f"{arm}_d{draw}_s{seed}"


def data_dir(args, draw: int) -> str:
    """The synthetic set of ``draw``: ``OUT/data`` (draw 0) or ``OUT/data_d<draw>``."""
    return os.path.join(args.out, "data" if draw == 0 else f"data_d{draw}")


def run_arm(args, arm: str, flags: list[str], pretrained: bool, seed: int, draw: int = 0) -> dict:
    out, n = os.path.join(args.out, run_name(arm, draw, seed)), args.iterations
    script = SNIPER_TRAIN if arm.startswith("sniper") else TRAIN
    rpn = ["--rpn-iterations", str(n // 4)]  # SNIPER's RPN-only run: a quarter of the budget
    flags = [g for f in flags for g in (rpn if f == "--rpn-iterations" else [f])]
    backbone = [] if "--backbone" in flags else ["--backbone", "premise"]
    cmd = [sys.executable, script, *flags, *backbone, "--render", "scale_true",
           "--iterations", str(n), "--eval-at", str(n // 4), str(n // 2), *TEST_LEVEL, "--threads", "1",
           "--seed", str(seed), "--out", out, "--synthetic-dir", data_dir(args, draw),
           "--synthetic", *map(str, args.synthetic), *(["--synthetic-draw", str(draw)] if draw else []),
           "--draw", "0", *(["--init", args.init] if pretrained else []),
           *(["--warm-start-epochs", str(args.warm_start_epochs)]
             if "snip" in flags and "--warm-start-epochs" not in flags else []), *args.extra]
    label = f"{arm}, seed {seed}" + (f", draw {draw}" if draw else "")
    return common.run_once(cmd, out, out + ".log", label)


def bootstrap_ap(args, runs: dict, area: str = "small") -> tuple[dict, int]:
    """Per run, AP on ``area``'s objects (COCO's ``"small"``, or ``"all"``) on its draw's test images
    and on ``--resamples`` bootstrap resamples of them: ``{(arm, draw, seed): [1 + B] array}``; and
    the number of test images over all draws. Within a draw every run sees the same resamples;
    draws are resampled independently (resample ``j`` of the union is resample ``j`` of each draw's
    images: a bootstrap stratified by draw)."""
    from scalekit.datasets import CocoDetection
    from scalekit.evaluation import bootstrap_coco_ap, coco_image_matches

    ap, images = {}, 0
    for draw in sorted({k[1] for k in runs}):
        root = os.path.join(data_dir(args, draw), "val")
        val = CocoDetection(os.path.join(root, "images"), os.path.join(root, "annotations.json"))
        keys, matches = [k for k in runs if k[1] == draw], []
        for arm, _, seed in keys:
            detections = torch.load(os.path.join(args.out, run_name(arm, draw, seed), "detections.pt"),
                                    weights_only=True)
            results, gt = common.coco_pair(detections, val.coco.dataset, val.label_to_category,
                                           runs[arm, draw, seed]["size_scale"])
            matches.append(coco_image_matches(results, gt, area=area))
        images += len(matches[-1]["image_ids"])
        ap.update(zip(keys, bootstrap_coco_ap(matches, resamples=args.resamples, seed=draw)))
    return ap, images


def summarise(args, runs: dict, ap: dict, ap_all: dict | None = None) -> dict:
    """Per arm: AP_S (mean, min, max over seeds) and AP against budget; per comparison: the paired
    difference of the seed-averaged AP_S with its bootstrap interval; the 2 x 2 interaction; with
    ``ap_all`` (:func:`bootstrap_ap` over all sizes) the comparisons again on AP over all sizes,
    the metric of the thesis' SNIPER tables (``comparisons_all_sizes``)."""
    from scalekit.evaluation import paired_difference

    arms = [a for a, _, _ in ALL_ARMS if any(k[0] == a for k in runs)]
    mean = {a: np.mean([ap[k] for k in ap if k[0] == a], axis=0) for a in arms}
    mean_all = {a: np.mean([ap_all[k] for k in ap_all if k[0] == a], axis=0) for a in arms} if ap_all else None
    out = {"arms": {}, "comparisons": [], "seeds": args.seeds, "iterations": args.iterations}
    if args.draws != [0]:  # absent for draw 0 alone, as before draws existed
        out["draws"] = args.draws
    for a in arms:
        rs = [runs[k] for k in sorted(runs) if k[0] == a]
        aps = [float(ap[k][0]) for k in sorted(ap) if k[0] == a]
        out["arms"][a] = {"APs": {"mean": float(np.mean(aps)), "min": min(aps), "max": max(aps), "per_seed": aps},
                          "AP": float(np.mean([r["coco"]["AP"] for r in rs])),
                          "budget": [{"iteration": p["iteration"],
                                      "APs": float(np.mean([r["budget"][i]["APs"] for r in rs]))}
                                     for i, p in enumerate(rs[0]["budget"])],
                          "train_pixels_per_image": float(np.mean([r["train_pixels_per_image"] for r in rs])),
                          "train_seconds": float(np.mean([r["train_seconds"] for r in rs])),
                          "train_inputs_per_s": float(np.mean([r["train_inputs_per_s"] or math.nan for r in rs])),
                          "thesis_APs": THESIS_APS.get(a)}
        if all("proposal_recall" in r for r in rs):  # Table 3.1
            out["arms"][a]["rpn_recall50_by_size"] = {
                k: float(np.mean([r["proposal_recall"]["recall50_by_size"][k] for r in rs]))
                for k in rs[0]["proposal_recall"]["recall50_by_size"]}
    for a, b in COMPARISONS:
        if a in mean and b in mean:
            out["comparisons"].append({"a": a, "b": b, **paired_difference(mean[a], mean[b]),
                                       "per_seed": per_seed(ap, (a, 1), (b, -1))})
            if mean_all is not None:
                out.setdefault("comparisons_all_sizes", []).append(
                    {"a": a, "b": b, **paired_difference(mean_all[a], mean_all[b]),
                     "per_seed": per_seed(ap_all, (a, 1), (b, -1))})
    for key, (a, b, c, d) in (("interaction", ("snip", "mst", "snip_scratch", "mst_scratch")),
                              ("fpn_interaction", ("snip", "mst", "snip_fpn", "mst_fpn"))):
        if all(x in mean for x in (a, b, c, d)):
            out[key] = {**paired_difference(mean[a] - mean[b], mean[c] - mean[d]),
                        "per_seed": per_seed(ap, (a, 1), (b, -1), (c, -1), (d, 1))}
    return out


def per_seed(ap: dict, *terms) -> list[float]:
    """The seed spread of a comparison: per (draw, seed) that every arm ran, the sum of ``sign * AP``
    over ``terms`` (``(arm, sign)``) on the test images themselves (column 0 of :func:`bootstrap_ap`)."""
    runs = sorted(set.intersection(*({k[1:] for k in ap if k[0] == arm} for arm, _ in terms)))
    return [float(sum(sign * ap[(arm, *r)][0] for arm, sign in terms)) for r in runs]


FPN_INTERACTION = "(snip - mst) single-level - (snip - mst) FPN (no thesis row)"


def table(summary: dict) -> str:
    """The RST tables of docs/reproductions.rst (AP in %); with SNIPER's arms also training inputs
    (images or chips) per second and Table 3.1's RPN recall by size."""
    sniper = any(a.startswith("sniper") for a in summary["arms"])
    rows = [".. list-table::", "   :header-rows: 1", "", "   * - arm", "     - AP_S, mean (min-max)",
            "     - AP_S at 1/4, 1/2, all of the budget", "     - AP (all sizes)", "     - train pixels / image",
            *(["     - training inputs / s"] if sniper else []), "     - thesis AP_S"]
    for a, r in summary["arms"].items():
        s = r["APs"]
        rows += [f"   * - {a}", f"     - {_pct(s['mean'])} ({_pct(s['min'])}-{_pct(s['max'])})",
                 "     - " + ", ".join(_pct(p["APs"]) for p in r["budget"]) + f", {_pct(s['mean'])}",
                 f"     - {_pct(r['AP'])}", f"     - {r['train_pixels_per_image'] / 1e3:.0f}k",
                 *([f"     - {r['train_inputs_per_s']:.2f}"] if sniper else []),
                 f"     - {r['thesis_APs'] if r['thesis_APs'] is not None else '-'}"]
    rows += _comparison_rows("comparison (thesis: a > b)", _comparison_items(summary))
    if "comparisons_all_sizes" in summary:
        rows += _comparison_rows("comparison on AP over all sizes (thesis: a > b)",
                                 [(f"{c['a']} - {c['b']}", c) for c in summary["comparisons_all_sizes"]])
    recall = {a: r["rpn_recall50_by_size"] for a, r in summary["arms"].items() if "rpn_recall50_by_size" in r}
    if recall:  # Table 3.1
        bins = list(next(iter(recall.values())))
        rows += ["", ".. list-table::", "   :header-rows: 1", "", "   * - arm (RPN recall at IoU 0.5, %)",
                 *(f"     - {b} px" for b in bins)]
        for a, r in recall.items():
            rows += [f"   * - {a}", *(f"     - {_pct(r[b])}" for b in bins)]
    return "\n".join(rows) + "\n"


def _comparison_items(summary: dict) -> list[tuple[str, dict]]:
    """``(row name, comparison)`` for every comparison and interaction of ``summary``, in table order."""
    items = [(f"{c['a']} - {c['b']}", c) for c in summary["comparisons"]]
    if "interaction" in summary:
        items.append(("(snip - mst) pretrained - (snip - mst) scratch", summary["interaction"]))
    if "fpn_interaction" in summary:
        items.append((FPN_INTERACTION, summary["fpn_interaction"]))
    return items


def _verdict(name: str, c: dict) -> tuple[str, str]:
    """The row's shown name and its direction: "as the thesis", "reversed" or "within noise" (the
    FPN interaction and SNIPER - SNIP, which have no thesis direction, name the better side)."""
    if name == FPN_INTERACTION:  # not a thesis row: which detector SNIP helps more
        return name, "within noise" if not c["holds"] else "larger single-level" if c["low"] > 0 else "larger with FPN"
    if name == "snip - snip_nowarm":  # the thesis' recipe (§2.7.1), not a table of it
        return ("snip - snip_nowarm (the thesis warm-starts)",
                "within noise" if not c["holds"] else "warm start better" if c["low"] > 0 else "no warm start better")
    if name == "sniper - snip":  # Table 3.3 without batch normalisation: "comparable results"
        return ("sniper - snip (thesis: comparable)",
                "within noise" if not c["holds"] else "sniper better" if c["low"] > 0 else "snip better")
    return name, "within noise" if not c["holds"] else "as the thesis" if c["low"] > 0 else "reversed"


def replication_table(summaries: list[dict]) -> str:
    """One RST table of the comparisons common to ``summaries`` (results of :func:`summarise`, e.g.
    one per data draw): each one's difference, interval and direction side by side, and whether the
    directions agree ("same" or "differ"; a direction within noise differs from one that holds).
    Columns are named by each summary's draws and seeds."""
    if len(summaries) < 2:
        raise ValueError(f"summaries: expected at least two results to compare, got {len(summaries)}")
    rows = [dict(_comparison_items(s)) for s in summaries]
    names = [n for n in rows[0] if all(n in r for r in rows[1:])]
    out = [".. list-table::", "   :header-rows: 1", "", "   * - comparison (thesis: a > b)"]
    for s in summaries:
        draws, seeds = s.get("draws", [0]), s["seeds"]
        out.append(f"     - draw{'s' * (len(draws) > 1)} {', '.join(map(str, draws))}, "
                   f"{len(seeds)} seed{'s' * (len(seeds) > 1)}: a - b [interval], direction")
    out.append("     - directions")
    for name in names:
        verdicts = [_verdict(name, r[name]) for r in rows]
        out.append(f"   * - {verdicts[0][0]}")
        out += [f"     - {_interval(r[name])}, {v}" for r, (_, v) in zip(rows, verdicts)]
        out.append(f"     - {'same' if len({v for _, v in verdicts}) == 1 else 'differ'}")
    return "\n".join(out) + "\n"


def _pct(v: float) -> str:
    """A fraction in points with one decimal (``0.0123`` -> ``"1.2"``); a dash for NaN."""
    return "–" if math.isnan(v) else f"{100 * v:.1f}"


def _interval(c: dict) -> str:
    """A comparison's difference and bootstrap interval in points: ``"0.9 [0.2, 1.6]"``."""
    return f"{_pct(c['difference'])} [{_pct(c['low'])}, {_pct(c['high'])}]"


def _comparison_rows(header: str, items: list) -> list[str]:
    rows = ["", ".. list-table::", "   :header-rows: 1", "", f"   * - {header}",
            "     - a - b [95 % basic bootstrap interval]", "     - per seed: min to max (seeds > 0)",
            "     - direction"]
    for name, c in items:
        name, verdict = _verdict(name, c)
        seeds = c.get("per_seed") or [math.nan]
        spread = f"{_pct(min(seeds))} to {_pct(max(seeds))} ({sum(v > 0 for v in seeds)} of {len(seeds)})"
        rows += [f"   * - {name}", f"     - {_interval(c)}",
                 f"     - {spread}", f"     - {verdict}"]
    return rows


def budget_figure(summary: dict, png: str) -> None:
    """AP_S (%) against SGD iterations, one line per arm (the seeds' mean), from ``summary`` alone;
    the points are also written as JSON lines beside the PNG (``.jsonl``)."""
    points = {}
    for arm, r in summary["arms"].items():
        for p in [*r["budget"], {"iteration": summary["iterations"], "APs": r["APs"]["mean"]}]:
            points.setdefault(p["iteration"], {})[arm] = 100 * p["APs"]
    jsonl = os.path.splitext(png)[0] + ".jsonl"
    with open(jsonl, "w") as f:
        for it in sorted(points):
            f.write(json.dumps({"iteration": it, **points[it]}) + "\n")
    common.plot_curves(jsonl, png, keys=list(summary["arms"]), x="iteration")


def main(argv=None) -> dict:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.replication:
        summaries = []
        for path in args.replication:
            with open(path) as f:
                summaries.append(json.load(f))
        print(replication_table(summaries), end="")
        return {"replication": args.replication}
    os.makedirs(args.out, exist_ok=True)
    start = time.perf_counter()
    q = argparse.ArgumentParser()
    common.add_detection_args(q, out=args.out)
    targs, _ = q.parse_known_args(["--synthetic-dir", data_dir(args, 0), *args.extra])
    common.check_detection_args(q, targs)
    for draw in args.draws:  # once, before the runs
        common.prepare_synthetic(data_dir(args, draw), targs.size_scale, args.synthetic, render="scale_true",
                                 draw=draw)

    # one queue of (draw, seed, arm) runs, seed by seed: --jobs processes stay busy to the end, and the
    # first seeds finish whole first (an interrupted queue leaves complete seeds, which a rerun keeps)
    tasks = [(arm, flags, pretrained, draw, seed) for draw in args.draws for seed in args.seeds
             for arm, flags, pretrained in ALL_ARMS if arm in args.arms]

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        done = pool.map(lambda t: run_arm(args, t[0], t[1], t[2], seed=t[4], draw=t[3]), tasks)
        runs = {(arm, draw, seed): r for (arm, _, _, draw, seed), r in zip(tasks, done)}
    ap, images = bootstrap_ap(args, runs)
    # the thesis' SNIPER tables compare AP over all sizes; Table 2.1 compares AP_S
    ap_all = bootstrap_ap(args, runs, area="all")[0] if args.table == "sniper" else None
    summary = summarise(args, runs, ap, ap_all)
    summary.update(test_images=images, resamples=args.resamples, wall_seconds=time.perf_counter() - start,
                   machine={"platform": platform.platform(), "cpus": os.cpu_count(), "load_average": os.getloadavg()},
                   runs={run_name(*k): r for k, r in runs.items()})
    suffix = "" if args.table == "2.1" else f"_{args.table}"
    with open(os.path.join(args.out, f"results{suffix}.json"), "w") as f:
        json.dump(summary, f, indent=1)
    with open(os.path.join(args.out, f"table{suffix}.rst"), "w") as f:
        f.write(table(summary))
    if args.figure:
        budget_figure(summary, args.figure)
    print(table(summary))
    return summary


if __name__ == "__main__":
    main()
