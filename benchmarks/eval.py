"""Evaluation throughput.

* ``midpoint_map`` and ``tiou_map`` (10 thresholds) on seeded data: V videos x
  60 classes, 2,500 detections per video (about 42 per class) and 3
  ground-truth intervals per class and video; no peer runs at this size (a
  per-detection Python loop, as ActivityNet's evaluator, takes minutes), so the
  table gives our time only.
* ``coco_evaluate`` vs plain pycocotools (``loadRes`` + ``COCOeval``) on the same
  fabricated COCO-style data.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time

import numpy as np
import torch

from benchmarks._common import Table, measure
from scalekit.evaluation import coco_evaluate, midpoint_map, tiou_map, to_coco_results


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


def _once(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def run(quick: bool = False) -> None:
    table = Table("temporal mAP (60 classes, 2,500 detections per video)", "peer")
    for videos in (100,) if quick else (100, 1000):
        det, gt = temporal_data(videos)
        table.row(f"midpoint_map {videos} videos ({videos * 2500:,} det)", torch.device("cpu"),
                  _once(lambda: midpoint_map(det, gt)), None)
        table.row(f"tiou_map, 10 thresholds, {videos} videos", torch.device("cpu"),
                  _once(lambda: tiou_map(det, gt)), None)

    from tests.evaluation.test_coco_recall_readers import _fabricated

    table = Table("coco_evaluate vs plain pycocotools (bbox)", "pycocotools")
    for images in (200,) if quick else (200, 1000):
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

        cpu = torch.device("cpu")
        table.row(f"coco_evaluate {images} images", cpu, measure(lambda: coco_evaluate(preds, gt), cpu, min_time=1),
                  measure(plain, cpu, min_time=1))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    run(parser.parse_args().quick)
