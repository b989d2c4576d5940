"""Evaluation throughput, ours beside the official tools on the same data.

* ``tiou_map`` (ActivityNet protocol, end to end from the JSON files: reading +
  evaluating) vs ActivityNet's own ``Evaluation/eval_detection.py``
  (``ANETdetection(...).evaluate()``), when given a checkout of it with
  ``--activitynet PATH`` (the tool is called where it lies; it needs pandas and
  joblib, e.g. ``pip install --target DIR pandas joblib`` and ``--activitynet-deps DIR``).
  Seeded data: V validation videos, 200 classes, 900 predictions per video. The
  official tool runs with joblib's sequential backend (one process, as ours);
  its own default starts one worker process per class. Ours is timed with
  orjson when it is installed (``pip install 'torch-scalekit[fast-json]'``; the
  Makefile installs it), and a line breaks the reading down by parser.
* ``midpoint_map`` and ``tiou_map`` at a larger size, ours only.
* ``coco_evaluate`` vs plain pycocotools, and ``backend="faster_coco_eval"`` vs
  ``backend="pycocotools"`` when faster-coco-eval is installed.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import tempfile
import time
import warnings

import numpy as np
import torch

from benchmarks._common import Table, measure
from scalekit.evaluation import coco_evaluate, midpoint_map, read_activitynet, tiou_map, to_coco_results


def temporal_data(videos: int, classes: int = 60, per_video: int = 2500, gt_per_class: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    gt, det = {}, {}
    for v in range(videos):
        labels = np.repeat(np.arange(classes), gt_per_class)
        starts = rng.uniform(0, 20000, labels.size)
        gt[v] = {"labels": labels, "segments": np.stack([starts, starts + rng.uniform(30, 600, labels.size)], 1)}
        dl = rng.integers(0, classes, per_video)
        ds = rng.uniform(0, 20000, per_video)
        det[v] = {"labels": dl, "segments": np.stack([ds, ds + rng.uniform(6, 600, per_video)], 1),
                  "scores": rng.random(per_video)}
    return det, gt


def activitynet_files(folder: str, videos: int, classes: int = 200, per_video: int = 900, seed: int = 0):
    """ActivityNet-format ground truth and results JSON (with 5% of predictions on unknown videos)."""
    rng = np.random.default_rng(seed)
    names = [f"class {c:03d}" for c in range(classes)]
    database, results = {}, {}
    for v in range(videos):
        anns = []
        for _ in range(rng.integers(1, 4)):
            s = float(rng.uniform(0, 150))
            anns.append({"segment": [s, s + float(rng.uniform(2, 40))], "label": names[int(rng.integers(classes))]})
        database[f"v{v:05d}"] = {"subset": "validation", "annotations": anns}
        s = rng.uniform(0, 150, per_video)
        vid = f"v{v:05d}" if rng.random() > 0.05 else f"unknown{v:05d}"
        results[vid] = [{"segment": [float(a), float(a + d)], "label": names[int(c)], "score": float(p)}
                        for a, d, c, p in zip(s, rng.uniform(1, 40, per_video), rng.integers(0, classes, per_video),
                                              rng.random(per_video))]
    used = {a["label"] for e in database.values() for a in e["annotations"]}
    for preds in results.values():  # the official tool raises KeyError on labels without ground truth
        preds[:] = [p for p in preds if p["label"] in used]
    gt_file, res_file = os.path.join(folder, "gt.json"), os.path.join(folder, "res.json")
    with open(gt_file, "w") as f:
        json.dump({"version": "1.3", "taxonomy": [], "database": database}, f)
    with open(res_file, "w") as f:
        json.dump({"version": "1.3", "external_data": {}, "results": results}, f)
    return gt_file, res_file, sum(len(p) for p in results.values())


def one_video(detections: int, ground_truth: int, classes: int = 1, seed: int = 0):
    """One long video: ``detections`` and ``ground_truth`` segments spread over ``classes``."""
    rng = np.random.default_rng(seed)
    s = rng.uniform(0, 1e6, ground_truth)
    gt = {"v": {"labels": rng.integers(0, classes, ground_truth),
                "segments": np.stack([s, s + rng.uniform(10, 2000, ground_truth)], 1)}}
    s = rng.uniform(0, 1e6, detections)
    det = {"v": {"labels": rng.integers(0, classes, detections),
                 "segments": np.stack([s, s + rng.uniform(10, 2000, detections)], 1), "scores": rng.random(detections)}}
    return det, gt


def peak_memory(fn) -> tuple[float, float]:
    """(seconds, peak bytes traced by tracemalloc, numpy's arrays included) of ``fn()``."""
    import tracemalloc

    tracemalloc.start()
    try:
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def run_memory(detections: int, ground_truth: int = 2000) -> None:
    """Peak memory of the temporal evaluators for one video (issue 27: all pairs at once took 70 bytes a pair)."""
    print(f"\npeak memory (tracemalloc), one video, {detections:,} detections, {ground_truth:,} ground truths, "
          f"{detections * ground_truth:,} pairs ({detections * ground_truth * 70 / 2**30:.1f} GiB at 70 bytes a pair)")
    for classes in (1, 200):
        det, gt = one_video(detections, ground_truth, classes)
        for name, fn in (("tiou_map activitynet", lambda: tiou_map(det, gt)),
                         ("tiou_map thumos14", lambda: tiou_map(det, gt, protocol="thumos14")),
                         ("midpoint_map", lambda: midpoint_map(det, gt))):
            seconds, peak = peak_memory(fn)
            print(f"  {classes:>3} classes  {name:<22} peak {peak / 2**20:8.1f} MiB  {seconds:8.2f} s", flush=True)


def _once(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _ours_activitynet(gt_file, res_file):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gt, det, ids = read_activitynet(gt_file, res_file)
    return tiou_map(det, gt, classes=ids)


def _reading_breakdown(gt_file, res_file) -> str:
    """Seconds of read_activitynet with each parser (the compiled scanner, the numpy reader,
    then the JSON parsers alone: orjson, json), and of tiou_map, best of 3."""
    from unittest import mock

    from scalekit import _ext, _json
    from scalekit.evaluation import _anet_results, readers

    def read():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return read_activitynet(gt_file, res_file)

    parts = {}
    if _ext.has_ops():
        parts["compiled scanner"] = min(_once(read) for _ in range(3))
    with mock.patch.object(_anet_results, "_use_op", lambda: False):
        if _json._orjson is not None:
            parts["numpy reader, orjson numbers"] = min(_once(read) for _ in range(3))
        with mock.patch.object(_json, "_orjson", None):
            parts["numpy reader, json numbers"] = min(_once(read) for _ in range(3))
    with mock.patch.object(readers, "read_results", lambda data: None):
        if _json._orjson is not None:
            parts["orjson"] = min(_once(read) for _ in range(3))
        with mock.patch.object(_json, "_orjson", None):
            parts["json"] = min(_once(read) for _ in range(3))
    gt, det, ids = read()
    parts["tiou_map"] = min(_once(lambda: tiou_map(det, gt, classes=ids)) for _ in range(3))
    return ", ".join(f"{k} {v:.3f} s" for k, v in parts.items())


def add_options(parser) -> None:
    """The eval suite's options, as a group of ``parser`` (shown by ``python -m benchmarks --help``)."""
    group = parser.add_argument_group("eval suite")
    group.add_argument("--activitynet", metavar="PATH",
                       help="checkout of github.com/activitynet/ActivityNet: time its Evaluation/eval_detection.py "
                            "beside tiou_map, end to end from JSON")
    group.add_argument("--activitynet-deps", metavar="DIR", help="folder holding pandas and joblib for the official "
                       "tool (pip install --target DIR pandas joblib)")
    group.add_argument("--activitynet-videos", type=int, nargs="+", metavar="V",
                       help="sizes to time, in videos of 900 predictions (390 videos: about 342k predictions)")
    group.add_argument("--activitynet-repeats", type=int, default=1, metavar="R",
                       help="time ours (best of 3) and the official tool (once) in turns R times, a line per turn, "
                            "the table's row the best of each (a shared machine's load changes between turns)")
    group.add_argument("--eval-memory", type=int, metavar="N", help="only measure the peak memory of the temporal "
                       "evaluators for N detections and 2,000 ground truths in one video")


def options_from(args) -> dict:
    """The keyword arguments of :func:`run` from parsed arguments."""
    return {"activitynet": args.activitynet, "activitynet_deps": args.activitynet_deps,
            "activitynet_videos": args.activitynet_videos, "activitynet_repeats": args.activitynet_repeats,
            "eval_memory": args.eval_memory}


def run(quick: bool = False, activitynet: str | None = None, activitynet_deps: str | None = None,
        activitynet_videos=None, activitynet_repeats: int = 1, eval_memory: int | None = None) -> None:
    if eval_memory:
        run_memory(eval_memory)
        return
    cpu = torch.device("cpu")
    official = None
    if activitynet:
        from tests.evaluation.official.tools import activitynet_evaluate, load_activitynet

        official = load_activitynet(activitynet, activitynet_deps)
    table = Table("tiou_map (ActivityNet protocol) vs ActivityNet's eval_detection.py, end to end from JSON",
                  "ActivityNet" if official else "peer")
    for videos in activitynet_videos or ((20,) if quick else (20, 100)):
        with tempfile.TemporaryDirectory() as tmp:
            gt_file, res_file, n = activitynet_files(tmp, videos)
            ours_result = _ours_activitynet(gt_file, res_file)
            ours = theirs = None
            for turn in range(max(activitynet_repeats, 1) if official is not None else 1):
                mine = min(_once(lambda: _ours_activitynet(gt_file, res_file)) for _ in range(3))
                ours = mine if ours is None else min(ours, mine)
                if official is None:
                    break
                t = time.perf_counter()
                with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                    warnings.simplefilter("ignore")
                    ev = activitynet_evaluate(official, gt_file, res_file)
                took = time.perf_counter() - t
                theirs = took if theirs is None else min(theirs, took)
                if activitynet_repeats > 1:
                    print(f"  turn {turn + 1}: scalekit {mine:.3f} s, official {took:.2f} s, {took / mine:.1f}x, "
                          f"load {os.getloadavg()[0]:.1f}", flush=True)
            if official is not None:
                diff = abs(ev.average_mAP - ours_result["mAP"])
                print(f"  average mAP: official {ev.average_mAP:.17g}, scalekit {ours_result['mAP']:.17g}, "
                      f"|difference| {diff:.1e}")
            table.row(f"{videos} videos, 200 classes, {n:,} predictions", cpu, ours, theirs)
            print(f"  reading (read_activitynet, by parser) and evaluating: {_reading_breakdown(gt_file, res_file)}")
    if official is None:
        print("  (give --activitynet PATH to time the official tool beside ours)")

    table = Table("temporal mAP (60 classes, 2,500 detections per video)", "peer")
    for videos in (100,) if quick else (100, 1000):
        det, gt = temporal_data(videos)
        table.row(f"midpoint_map {videos} videos ({videos * 2500:,} det)", cpu,
                  _once(lambda: midpoint_map(det, gt)), None)
        table.row(f"tiou_map, 10 thresholds, {videos} videos", cpu, _once(lambda: tiou_map(det, gt)), None)

    from tests.evaluation.test_coco_recall_readers import _fabricated

    table = Table("coco_evaluate vs plain pycocotools (bbox)", "pycocotools")
    sizes = (200,) if quick else (200, 1000)
    for images in sizes:
        gt, preds = _fabricated(seed=0, images=images, classes=20)

        def plain():
            from pycocotools.coco import COCO
            from pycocotools.cocoeval import COCOeval

            with contextlib.redirect_stdout(io.StringIO()):
                coco = COCO()
                coco.dataset = gt
                coco.createIndex()
                ev = COCOeval(coco, coco.loadRes(to_coco_results(preds)), "bbox")
                ev.evaluate(), ev.accumulate(), ev.summarize()

        table.row(f"coco_evaluate {images} images", cpu, measure(lambda: coco_evaluate(preds, gt), cpu, min_time=1),
                  measure(plain, cpu, min_time=1))
    try:
        import faster_coco_eval  # noqa: F401
    except ImportError:
        print("  (pip install faster-coco-eval to time backend='faster_coco_eval')")
        return
    table = Table("coco_evaluate backend='faster_coco_eval' vs backend='pycocotools'", "pycocotools")
    for images in sizes:
        gt, preds = _fabricated(seed=0, images=images, classes=20)
        table.row(f"coco_evaluate {images} images", cpu,
                  measure(lambda: coco_evaluate(preds, gt, backend="faster_coco_eval"), cpu, min_time=1),
                  measure(lambda: coco_evaluate(preds, gt), cpu, min_time=1))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    add_options(parser)
    args = parser.parse_args()
    run(args.quick, **options_from(args))
