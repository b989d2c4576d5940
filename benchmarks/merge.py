"""Non-maximum merging (greedy_nmm, nmm) vs SAHI, end to end from the same detector outputs.

The boxes are what sliced detection hands its merge step: seeded clusters of
about 10 detections around each small object (4-64 px, the partial boxes of
overlapping slices and the detector's duplicates), in an image that grows
with the count so that the density stays that of one crowded aerial image
(1k boxes: 640 x 640 px; 100k boxes: 6,400 x 6,400 px), over 10 classes.

SAHI's side is what a SAHI user runs on the same tensors: one
``ObjectPrediction`` per box, then its ``GreedyNMMPostprocess`` /
``NMMPostprocess`` (its ``get_sliced_prediction`` defaults: IoS 0.5, per
class; its postprocess backend as it resolves it on this machine). Ours is one
call of :func:`scalekit.ops.greedy_nmm` / :func:`scalekit.ops.nmm` on the
tensors. Both must return the same merged boxes and scores, checked before
timing. Needs ``pip install sahi`` (a benchmark dependency, never a runtime
one); without it the suite says so and times ours alone.
"""

from __future__ import annotations

import argparse
import math

import torch

from benchmarks._common import Table, measure
from scalekit import ops

# Issue 26's target: the merge of 100k boxes at least 30x faster than SAHI end to end, on the CPU.
TARGET_RATIO = 30.0
SETTINGS = dict(match_threshold=0.5, metric="ios")  # SAHI's get_sliced_prediction defaults


def sliced_detections(n: int, seed: int = 0, classes: int = 10):
    """``(boxes [n, 4], scores [n], labels [n])``: clusters of ~10 boxes around n / 10 small objects."""
    g = torch.Generator().manual_seed(seed)
    objects = max(n // 10, 1)
    side = 64 * math.sqrt(objects)
    ctr = torch.rand(objects, 2, generator=g) * side
    size = 4 + torch.rand(objects, 1, generator=g) * 60
    size = size * torch.cat([torch.ones(objects, 1), 0.5 + torch.rand(objects, 1, generator=g)], 1)
    which = torch.randint(0, objects, (n,), generator=g)
    c = ctr[which] + torch.randn(n, 2, generator=g) * size[which] * 0.1
    s = size[which] * (1 + torch.randn(n, 2, generator=g) * 0.1).clamp(min=0.5)
    boxes = torch.cat([c - s / 2, c + s / 2], 1).clamp(min=0)  # SAHI's boxes are non-negative
    labels = (torch.randint(0, 10, (objects,), generator=g)[which] + (torch.rand(n, generator=g) < 0.1)) % classes
    return boxes, torch.rand(n, generator=g), labels


def _sahi():
    try:
        from sahi.postprocess.combine import GreedyNMMPostprocess, NMMPostprocess
        from sahi.prediction import ObjectPrediction
    except ImportError:
        return None
    return ObjectPrediction, {"greedy_nmm": GreedyNMMPostprocess, "nmm": NMMPostprocess}


def sahi_merge(sahi, kind, boxes, scores, labels, match_threshold, metric):
    """SAHI end to end: its prediction objects from the detector's tensors, then its postprocess."""
    object_prediction, postprocess = sahi
    predictions = [object_prediction(bbox=b, score=s, category_id=c)
                   for b, s, c in zip(boxes.tolist(), scores.tolist(), labels.tolist())]
    merge = postprocess[kind](match_threshold=match_threshold, match_metric=metric.upper(), class_agnostic=False)
    return merge(predictions)


def _rows(merged, merged_scores, labels):
    return sorted(torch.cat([merged.double(), merged_scores.double()[:, None], labels.double()[:, None]], 1).tolist())


def _sahi_rows(predictions):
    return sorted(p.bbox.to_xyxy() + [p.score.value, p.category.id] for p in predictions)


def run(quick: bool = False) -> None:
    sizes = [1000, 10000] if quick else [1000, 10000, 100000]
    sahi = _sahi()
    cpu = torch.device("cpu")
    title = (f"greedy_nmm / nmm (IoS 0.5, per class) vs SAHI's ObjectPrediction + postprocess, "
             f"end to end (target >= {TARGET_RATIO:g}x at 100k)")
    table = Table(title, "SAHI" if sahi else "SAHI (absent)")
    for kind in ("greedy_nmm", "nmm"):
        fn = getattr(ops, kind)
        for n in sizes:
            boxes, scores, labels = sliced_detections(n)

            def ours():
                keep, merged, merged_scores = fn(boxes, scores, labels, **SETTINGS)
                return keep, merged, merged_scores, labels[keep]

            keep, merged, merged_scores, kept_labels = ours()
            theirs = None
            if sahi is not None:
                expected = sahi_merge(sahi, kind, boxes, scores, labels, **SETTINGS)
                assert _rows(merged, merged_scores, kept_labels) == _sahi_rows(expected), "results differ"
                theirs = measure(lambda: sahi_merge(sahi, kind, boxes, scores, labels, **SETTINGS), cpu,
                                 min_time=0, max_repeat=3)
            table.row(f"{kind} n={n} (merged into {len(keep)})", cpu, measure(ours, cpu), theirs)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1k and 10k boxes only")
    run(parser.parse_args().quick)
