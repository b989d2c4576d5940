"""Regenerate the official tools' numbers in this folder (``anet.json``, ``thumos14.json``).

The inputs are seeded synthetic cases plus the edge cases of issue 13; the
expected numbers come from running the official tools themselves:

    python -m tests.evaluation.official.generate \\
        --activitynet /path/to/ActivityNet --deps /path/to/pandas-and-joblib \\
        --thumos14-2014 /path/to/TH14evalkit --thumos14-updated /path/to/updated-kit

* ``--activitynet``: a checkout of ``github.com/activitynet/ActivityNet``
  (``Evaluation/eval_detection.py``; commit 82304fa used).
* ``--thumos14-2014``: the 2014 kit, ``TH14evaldet.m``, ``TH14eventdetpr.m``,
  ``intervaloverlapvalseconds.m`` (mirrored in
  ``github.com/demianzhang/weakly-action-localization``, ``TH14evalkit/``).
* ``--thumos14-updated``: the updated kit, ``TH14evalDet_Updated.m`` and its
  ``intervaloverlapvalseconds.m`` (mirrored in ``github.com/zhengshou/scnn``,
  ``experiments/THUMOS14/eval/``).

Octave (``apt-get install octave``) runs the MATLAB kits.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile

import numpy as np

from tests.evaluation.official.tools import activitynet_evaluate, load_activitynet, run_thumos14

HERE = os.path.dirname(os.path.abspath(__file__))
THUMOS_CLASSES = [(7, "BaseballPitch"), (9, "BasketballDunk"), (12, "Billiards"), (21, "CleanAndJerk"),
                  (22, "CliffDiving")]
THUMOS_THRESHOLDS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]


def _jitter(rng, seg, scale):
    s, e = seg
    n = rng.normal(0, scale * (e - s), 2)
    return [round(s + n[0], 2), round(max(s + n[0] + 0.1, e + n[1]), 2)]


# ----------------------------------------------------------------------------- ActivityNet


def anet_seeded(seed: int, videos: int = 12, classes: int = 6):
    rng = np.random.default_rng(seed)
    names = [f"action {c}" for c in range(classes)]
    database, results = {}, {}
    for v in range(videos):
        subset = "validation" if v < videos - 3 else "testing"
        anns = []
        for _ in range(rng.integers(1, 4)):
            s = round(float(rng.uniform(0, 150)), 2)
            anns.append({"segment": [s, round(s + float(rng.uniform(2, 40)), 2)], "label": str(rng.choice(names))})
        database[f"v_{seed}_{v}"] = {"subset": subset, "annotations": anns}
    # the official tool raises KeyError on a predicted label without validation ground truth
    names = sorted({a["label"] for e in database.values() if e["subset"] == "validation" for a in e["annotations"]})
    for v in range(videos):
        anns = database[f"v_{seed}_{v}"]["annotations"]
        preds = []
        for a in anns:
            for _ in range(rng.integers(0, 4) if a["label"] in names else 0):
                preds.append({"segment": _jitter(rng, a["segment"], 0.2), "label": a["label"]})
        for _ in range(rng.integers(0, 5)):
            s = round(float(rng.uniform(0, 150)), 2)
            preds.append({"segment": [s, round(s + float(rng.uniform(1, 30)), 2)], "label": str(rng.choice(names))})
        results[f"v_{seed}_{v}"] = preds
    for u in range(2):  # videos the ground truth has never heard of
        results[f"unknown_{seed}_{u}"] = [{"segment": [1.0, 9.0], "label": names[u]}]
    all_preds = [p for ps in results.values() for p in ps]
    for p, score in zip(all_preds, rng.permutation(len(all_preds)) / len(all_preds) + rng.uniform(0, 1e-3)):
        p["score"] = round(float(score), 9)
    return database, results


def _threshold_case():
    """A prediction at tIoU in [0.8999999999999999, 0.9): a hit on the linspace grid, not at 0.9."""
    grid = np.linspace(0.5, 0.95, 10)[8]
    for e in np.round(np.arange(1.0, 30.0, 0.01), 2):
        for d in np.round(np.arange(0.01, e, 0.01), 2):
            tiou = (e - d) / e  # gt [0, e], prediction [d, e]
            if grid <= tiou < 0.9:
                return float(e), float(d), float(tiou)
    raise RuntimeError("no such case")


def anet_cases():
    cases = []
    for seed in (0, 1, 2):
        db, res = anet_seeded(seed)
        cases.append({"name": f"seeded-{seed}", "database": db, "results": res})
    a = "Long jump"
    cases.append({"name": "unknown-video-minimal", "database": {
        "v1": {"subset": "validation", "annotations": [{"segment": [0.0, 10.0], "label": a},
                                                      {"segment": [20.0, 30.0], "label": a}]}},
        "results": {"u1": [{"segment": [0.0, 10.0], "label": a, "score": 0.9}],
                    "u2": [{"segment": [0.0, 10.0], "label": a, "score": 0.8}],
                    "v1": [{"segment": [0.0, 10.0], "label": a, "score": 0.7}]}})
    cases.append({"name": "other-subset", "database": {
        "v1": {"subset": "validation", "annotations": [{"segment": [0.0, 10.0], "label": a}]},
        "t1": {"subset": "testing", "annotations": [{"segment": [0.0, 10.0], "label": a}]}},
        "results": {"t1": [{"segment": [0.0, 10.0], "label": a, "score": 0.9}],
                    "v1": [{"segment": [0.0, 10.0], "label": a, "score": 0.5}]}})
    e, d, tiou = _threshold_case()
    cases.append({"name": "threshold-0.8999999999999999", "tiou": tiou, "database": {
        "v1": {"subset": "validation", "annotations": [{"segment": [0.0, e], "label": a}]}},
        "results": {"v1": [{"segment": [d, e], "label": a, "score": 0.9}]}})
    cases.append({"name": "negative-starts", "negative_starts": "keep", "database": {
        "v1": {"subset": "validation", "annotations": [{"segment": [-2.0, 8.0], "label": a},
                                                      {"segment": [10.0, 20.0], "label": a}]}},
        "results": {"v1": [{"segment": [-3.0, 8.0], "label": a, "score": 0.9},
                           {"segment": [-1.0, 15.0], "label": a, "score": 0.8},
                           {"segment": [11.0, 19.0], "label": a, "score": 0.7}]}})
    cases.append({"name": "zero-length-nan", "refused": True, "database": {
        "v1": {"subset": "validation", "annotations": [{"segment": [5.0, 5.0], "label": a}]}},
        "results": {"v1": [{"segment": [7.0, 7.0], "label": a, "score": 0.9}]}})
    return cases


def generate_anet(path: str, deps: str | None) -> list:
    module = load_activitynet(path, deps)
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in anet_cases():
            gt_file, pred_file = os.path.join(tmp, "gt.json"), os.path.join(tmp, "pred.json")
            with open(gt_file, "w") as f:
                json.dump({"version": "1.3", "taxonomy": [], "database": case["database"]}, f)
            with open(pred_file, "w") as f:
                json.dump({"version": "1.3", "external_data": {}, "results": case["results"]}, f)
            ev = activitynet_evaluate(module, gt_file, pred_file)
            names = {cidx: name for name, cidx in ev.activity_index.items()}
            case["expected"] = {
                "thresholds": [float(t) for t in ev.tiou_thresholds],
                "per_class": {names[k]: ev.ap[:, k].tolist() for k in range(ev.ap.shape[1])},
                "average_mAP": float(ev.average_mAP),
            }
            out.append(case)
    return out


# ----------------------------------------------------------------------------- THUMOS14


def thumos_seeded(seed: int, videos: int = 10):
    rng = np.random.default_rng(100 + seed)
    gt_lines = {name: [] for _, name in THUMOS_CLASSES}
    amb_lines, det = [], []
    for v in range(videos):
        vid = f"video_test_{seed:03d}{v:04d}"
        for cid, name in THUMOS_CLASSES:
            if rng.random() < 0.5 and not (v == 0):
                continue
            for _ in range(rng.integers(1, 4)):
                s = round(float(rng.uniform(0, 200)), 1)
                seg = [s, round(s + float(rng.uniform(1, 12)), 1)]
                gt_lines[name].append(f"{vid} {seg[0]} {seg[1]}")
                for _ in range(rng.integers(0, 4)):
                    det.append([vid, *_jitter(rng, seg, 0.3), cid])
        for _ in range(rng.integers(0, 3)):
            s = round(float(rng.uniform(0, 200)), 1)
            amb_lines.append(f"{vid} {s} {round(s + float(rng.uniform(1, 8)), 1)}")
            det.append([vid, s + 0.5, s + 3.0, int(rng.choice([c for c, _ in THUMOS_CLASSES]))])
        for _ in range(rng.integers(0, 6)):
            s = round(float(rng.uniform(0, 200)), 1)
            det.append([vid, s, round(s + float(rng.uniform(1, 10)), 1), int(rng.choice([c for c, _ in THUMOS_CLASSES]))])
    det.append([f"video_test_{seed:03d}9999", 1.0, 5.0, 7])  # a video without ground truth
    scores = rng.permutation(len(det)) / len(det) + rng.uniform(0, 1e-3)
    det_lines = [f"{v} {s} {e} {c} {round(float(p), 9)}" for (v, s, e, c), p in zip(det, scores)]
    return gt_lines, amb_lines, det_lines


def _single(gt, dets, amb=()):
    lines = {name: [] for _, name in THUMOS_CLASSES}
    for c, text in gt:
        lines[c].append(text)
    for _, name in THUMOS_CLASSES:  # the kits assert every class has ground truth
        if not lines[name]:
            lines[name].append("video_test_other 500.0 510.0")
    return lines, list(amb), dets


def thumos_cases():
    cases = []
    for seed in (0, 1, 2):
        g, a, d = thumos_seeded(seed)
        cases.append({"name": f"seeded-{seed}", "gt": g, "ambiguous": a, "det": d})
    g, a, d = _single([("BaseballPitch", "v1 0 10")], ["v1 0 6 7 0.9", "v1 0 9 7 0.5"])
    cases.append({"name": "ground-truth-side-minimal", "gt": g, "ambiguous": a, "det": d})
    g, a, d = _single([("BaseballPitch", "v1 0 10")], ["v1 0 5 7 0.9", "v1 0 4 7 0.8"])
    cases.append({"name": "exact-threshold-0.5", "gt": g, "ambiguous": a, "det": d})
    g, a, d = _single([("BaseballPitch", "v1 0 10"), ("BaseballPitch", "v1 50 60")],
                      ["v1 20 25 7 0.9", "v1 30 40 7 0.8", "v1 0 10 7 0.7", "v1 50 58 7 0.6"], ["v1 24 31"])
    cases.append({"name": "ambiguous", "gt": g, "ambiguous": a, "det": d})
    g, a, d = _single([("BaseballPitch", "v1 0 10")], ["u1 0 10 7 0.9", "v1 0 10 7 0.8"])
    cases.append({"name": "unknown-video", "gt": g, "ambiguous": a, "det": d})
    g, a, d = _single([("BaseballPitch", "v1 -2 8")], ["v1 -3 8 7 0.9", "v1 -1 9 7 0.8"])
    cases.append({"name": "negative-starts", "negative_starts": "keep", "gt": g, "ambiguous": a, "det": d})
    g, a, d = _single([("BaseballPitch", "v1 0 10")], ["v1 9 0 7 0.9"])
    cases.append({"name": "reversed-segment", "refused": True, "gt": g, "ambiguous": a, "det": d})
    g, a, d = _single([("BaseballPitch", "v1 0 10")], ["v1.mp4 0 9 7 0.9"])
    cases.append({"name": "mp4-suffix", "kits": ["updated"], "gt": g, "ambiguous": a, "det": d})
    return cases


def generate_thumos(kit_2014: str, kit_updated: str) -> list:
    out = []
    for case in thumos_cases():
        with tempfile.TemporaryDirectory() as tmp:
            with open(os.path.join(tmp, "detclasslist.txt"), "w") as f:
                f.write("".join(f"{c} {n}\n" for c, n in THUMOS_CLASSES))
            for name, lines in case["gt"].items():
                with open(os.path.join(tmp, f"{name}_test.txt"), "w") as f:
                    f.write("".join(line + "\n" for line in lines))
            with open(os.path.join(tmp, "Ambiguous_test.txt"), "w") as f:
                f.write("".join(line + "\n" for line in case["ambiguous"]))
            det_file = os.path.join(tmp, "det.txt")
            with open(det_file, "w") as f:
                f.write("".join(line + "\n" for line in case["det"]))
            expected = {}
            kits = case.get("kits", ["updated", "2014"])
            if "updated" in kits:
                expected["updated"] = []
                for thr in THUMOS_THRESHOLDS:
                    rows = run_thumos14(kit_updated, tmp, det_file, "test", thr, updated=True)["rows"]
                    expected["updated"].append({"threshold": thr, "per_class": {c: a for c, _, a in rows}})
            if "2014" in kits:
                rows = run_thumos14(kit_2014, tmp, det_file, "test", updated=False)["rows"]
                by_thr: dict = {}
                for c, t, a in rows:
                    by_thr.setdefault(t, {})[c] = a
                expected["2014"] = [{"threshold": t, "per_class": pc} for t, pc in by_thr.items()]
            case["expected"] = expected
            out.append(case)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--activitynet", help="checkout of activitynet/ActivityNet")
    parser.add_argument("--deps", help="folder with pandas and joblib for the ActivityNet tool")
    parser.add_argument("--thumos14-2014", dest="th2014", help="folder of THUMOS14's 2014 kit")
    parser.add_argument("--thumos14-updated", dest="thupd", help="folder of THUMOS14's updated kit")
    args = parser.parse_args(argv)
    if args.activitynet:
        with open(os.path.join(HERE, "anet.json"), "w") as f:
            json.dump({"tool": "activitynet/ActivityNet Evaluation/eval_detection.py", "cases":
                       generate_anet(args.activitynet, args.deps)}, f, indent=None, separators=(",", ":"))
    if args.th2014 and args.thupd:
        with open(os.path.join(HERE, "thumos14.json"), "w") as f:
            json.dump({"tool": "THUMOS14 TH14evaldet.m (2014) and TH14evalDet_Updated.m under GNU Octave",
                       "cases": generate_thumos(args.th2014, args.thupd)}, f, indent=None, separators=(",", ":"))


if __name__ == "__main__":
    main()
