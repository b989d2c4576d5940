"""Fuzz: the statistics of scalekit.evaluation.bootstrap and scale's range tuning on hostile input.
Each call gives a result that meets the contract checked below, or a ValueError/TypeError naming
the argument (hostile.py)."""

import math

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st

from scalekit.evaluation import bootstrap_coco_ap, coco_image_matches, paired_bootstrap, paired_difference
from scalekit.scale import AreaRange, Pyramid, ScaleSpec, tune_ranges
from tests.fuzz.hostile import HOSTILE_FLOATS, boxes, covers, expect_clear, hostile_floats, hostile_numbers, time_bound

GT = {"images": [{"id": 1, "width": 64, "height": 64}, {"id": 2, "width": 64, "height": 64}],
      "categories": [{"id": 3}],
      "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [4, 4, 10, 10], "area": 100, "iscrowd": 0},
                      {"id": 2, "image_id": 2, "category_id": 3, "bbox": [20, 20, 40, 40], "area": 1600,
                       "iscrowd": 0}]}


@covers(paired_difference)
@given(a=st.lists(st.sampled_from(HOSTILE_FLOATS) | st.floats(0, 1), min_size=0, max_size=6),
       b=st.lists(st.sampled_from(HOSTILE_FLOATS) | st.floats(0, 1), min_size=0, max_size=6),
       level=hostile_numbers(), method=st.sampled_from(["basic", "percentile", "bca"]))
def test_paired_difference(a, b, level, method):
    with time_bound(2.0):
        out = expect_clear(paired_difference, np.array(a, dtype=float), np.array(b, dtype=float), level, method,
                           names=("a and b", "a - b", "level", "method"))
    if out is not None:
        assert 1 <= out["resamples_used"] <= len(a) - 1
        assert out["low"] <= out["high"] or math.isnan(out["difference"])
        assert out["holds"] == (out["low"] > 0 or out["high"] < 0)


@covers(paired_bootstrap)
@given(values=st.lists(hostile_floats(), min_size=1, max_size=8), seeds=st.integers(0, 3),
       num_items=hostile_numbers(), resamples=hostile_numbers(), level=hostile_numbers())
def test_paired_bootstrap(values, seeds, num_items, resamples, level):
    items = np.array(values, dtype=float)

    def metric(run, idx):
        return float(run[idx % len(run)].mean())
    with time_bound(5.0):
        out = expect_clear(paired_bootstrap, metric, [items + 1] * seeds, [items] * seeds, num_items,
                           resamples=resamples, level=level,
                           names=("arms_a and arms_b", "num_items", "resamples", "level", "a - b"))
    if out is not None:
        assert len(out["per_seed"]) == seeds and out["resamples"] == resamples
        if np.isfinite(items).all() and np.abs(items).max() < 1e12:  # b + 1 - b is 1 in float64 there
            assert abs(out["diff"] - 1.0) < 1e-6  # a is b + 1 on every item


@st.composite
def coco_results(draw):
    n = draw(st.integers(0, 4))
    out = []
    for _ in range(n):
        bbox = [draw(hostile_floats()) if draw(st.booleans()) else draw(st.floats(0, 60)) for _ in range(4)]
        out.append({"image_id": draw(st.sampled_from([1, 2, 7])), "category_id": draw(st.sampled_from([3, 4])),
                    "bbox": bbox, "score": draw(hostile_floats() | st.floats(0, 1))})
    return out


@covers(coco_image_matches, bootstrap_coco_ap)
@given(results=coco_results(), area=st.sampled_from(["all", "small", "medium", "large", "tiny", (0, 5), (5, 1)]),
       resamples=hostile_numbers(), iou=st.sampled_from([None, 0.5, 0.75, 0.33, float("nan")]))
def test_coco_bootstrap(results, area, resamples, iou):
    with time_bound(5.0):
        matches = expect_clear(coco_image_matches, results, GT, area=area,
                               names=("results", "bbox", "score", "image_id", "category_id", "area"))
        if matches is None:
            return
        ap = expect_clear(bootstrap_coco_ap, [matches], resamples=resamples, iou=iou, names=("resamples", "iou"))
    if ap is not None:
        assert ap.shape == (1, 1 + resamples)
        finite = ap[np.isfinite(ap)]
        assert ((finite >= 0) & (finite <= 1)).all()


@covers(tune_ranges, Pyramid.with_ranges)
@given(dets=boxes(max_boxes=5), lo=hostile_floats(), hi=hostile_floats(), data=st.data())
def test_tune_ranges(dets, lo, hi, data):
    pyramid = Pyramid(((ScaleSpec.fixed(1.0), AreaRange()), (ScaleSpec.fixed(0.5), AreaRange())))
    n = dets.shape[0] if dets.dim() == 2 else 0
    scores = torch.rand(n)
    labels = torch.ones(n, dtype=torch.int64)
    with time_bound(5.0):
        area = expect_clear(AreaRange, lo, hi, names=("lo", "hi"))
        if area is None:
            return
        candidates = data.draw(st.sampled_from([[[area, area]], [[area]], [], [[AreaRange(), area]]]))
        per_level = [[{"boxes": dets, "scores": scores, "labels": labels}] * 2]
        out = expect_clear(tune_ranges, pyramid, per_level, candidates, lambda merged: float(len(merged[0]["boxes"])),
                           names=("ranges", "candidates", "per_level"))
    if out is not None:
        best, scores_ = out
        assert len(scores_) == len(candidates) and [a for _, a in best.levels] in [list(c) for c in candidates]
