"""Hostile input for the chip layer, the level specs and the box rules they share
(scalekit.chips, scalekit.scale.levels, scalekit.boxes): each call gives a result that
keeps its contract or a clear error naming the argument, within its time bound."""

import math

import numpy as np
import torch
from hypothesis import given, strategies as st

from scalekit.boxes import (box_size, decode_boxes, encode_boxes, inside_window, match_rois, max_iou, near_ignore,
                            out_of_range, size_in_range)
from scalekit.chips import Chip, ChipGenerator, chip_targets, crop_chip, sample_negatives, snip_chips
from scalekit.scale import AreaRange, ScaleSpec, invalidate_anchors, scaled_levels
from tests.fuzz.hostile import boxes, covers, expect_clear, hostile_floats, hostile_ints, hostile_numbers, time_bound

LEVELS = scaled_levels(((ScaleSpec.fixed(2.0), AreaRange(0, 40)), (ScaleSpec.fixed(1.0), AreaRange(20, math.inf))),
                       1.0)
SIZE = (120, 160)


def well_formed(b: torch.Tensor) -> bool:
    return b.ndim == 2 and b.shape[-1] == 4 and b.is_floating_point()


@covers(ChipGenerator)
@given(chip_size=hostile_numbers(), stride=hostile_numbers(), neg=hostile_numbers())
def test_chip_generator_settings(chip_size, stride, neg):
    with time_bound(1.0):
        gen = expect_clear(ChipGenerator, chip_size=chip_size, stride=stride, levels=LEVELS, neg_chips_per_image=neg,
                           names=("chip_size", "stride", "neg_chips_per_image"))
    if gen is not None:
        assert gen.chip_size >= 1 and gen.stride >= 1 and gen.neg_chips_per_image >= 0


@covers(ChipGenerator.positive_chips, ChipGenerator.negative_chips, ChipGenerator.generate,
        ChipGenerator.uncoverable)
@given(b=boxes(), p=boxes(max_boxes=12), h=st.sampled_from([1, 60, 120, 4000]))
def test_chip_planning(b, p, h):
    gen = ChipGenerator(chip_size=64, stride=16, levels=LEVELS, neg_min_proposals=1)
    with time_bound(3.0):
        chips = expect_clear(gen.generate, b, (h, 160), proposals=p, generator=0,
                             names=("boxes", "proposals", "image_size"))
        uncoverable = expect_clear(gen.uncoverable, b, (h, 160), names=("boxes", "image_size"))
    if chips is not None:
        for chip in chips:
            x1, y1, x2, y2 = chip.box.tolist()
            assert all(math.isfinite(v) for v in (x1, y1, x2, y2)) and x2 > x1 and y2 > y1
            assert chip.kind in ("pos", "neg")
    if uncoverable is not None:
        assert set(uncoverable) <= {0, 1}


@covers(snip_chips)
@given(b=boxes(), chip_size=hostile_numbers(), n=hostile_ints())
def test_snip_chips(b, chip_size, n):
    with time_bound(3.0):
        chips = expect_clear(snip_chips, b, (400, 500), chip_size=chip_size, num_candidates=n, generator=0,
                             names=("boxes", "chip_size", "num_candidates"))
    if chips is not None:
        for chip in chips:
            x1, y1, x2, y2 = chip.box.tolist()
            assert 0 <= x1 < x2 <= 500 + 1e-3 and 0 <= y1 < y2 <= 400 + 1e-3


@covers(chip_targets, crop_chip)
@given(b=boxes(), ignore=boxes(max_boxes=3, wrong_shapes=False), size=hostile_numbers(),
       min_size=hostile_floats())
def test_chip_targets_and_crop(b, ignore, size, min_size):
    chip = Chip(level=0, scale=2.0, box=torch.tensor([10.0, 10, 42, 42]))
    labels = torch.ones(b.shape[0] if b.ndim else 0, dtype=torch.int64)
    target = {"boxes": b, "labels": labels, "ignore_boxes": ignore}
    with time_bound(2.0):
        t = expect_clear(chip_targets, chip, target, AreaRange(0, 40), min_size=min_size,
                         names=("boxes", "labels", "ignore_boxes", "min_size", "target"))
        crop = expect_clear(crop_chip, torch.rand(3, *SIZE), target, chip, size, LEVELS,
                            names=("boxes", "labels", "ignore_boxes", "chip_size", "target"))
    if t is not None:
        for key in ("boxes", "ignore_boxes"):
            inside = t[key]
            assert inside.shape[-1] == 4 and torch.isfinite(inside).all()
            assert ((inside >= 0) & (inside <= 64 + 1e-3)).all()  # in the 64-pixel window at scale 2
    if crop is not None:
        pixels, _ = crop
        assert pixels.shape[-2:] == (int(size), int(size))


@covers(ScaleSpec, AreaRange, scaled_levels)
@given(size=hostile_numbers(), lo=hostile_numbers(), hi=hostile_numbers(), s=hostile_numbers())
def test_levels(size, lo, hi, s):
    with time_bound(1.0):
        spec = expect_clear(ScaleSpec, "shorter_side", size, names=("size",))
        area = expect_clear(AreaRange, lo, hi, names=("lo", "hi"))
        levels = expect_clear(scaled_levels, LEVELS, s, names=("s",))
    if spec is not None:
        assert math.isfinite(spec.size) and spec.size > 0
    if area is not None:
        assert area.lo <= area.hi
    if levels is not None:
        assert len(levels) == len(LEVELS)


@covers(box_size, size_in_range, out_of_range, max_iou, inside_window, near_ignore, match_rois)
@given(a=boxes(), b=boxes(), lo=hostile_floats(), hi=hostile_floats(), t=hostile_floats())
def test_box_rules(a, b, lo, hi, t):
    with time_bound(2.0):
        size = expect_clear(box_size, a, names=("boxes",))
        ok = expect_clear(size_in_range, a, lo, hi, names=("boxes", "lo", "hi"))
        out = expect_clear(out_of_range, a, torch.tensor([lo, hi]), names=("boxes", "valid_range"))
        best = expect_clear(max_iou, a, b, names=("boxes", "others"))
        inside = expect_clear(inside_window, a, b, names=("boxes", "windows"))
        near = expect_clear(near_ignore, a, b, t, names=("boxes", "ignore_boxes", "iou_threshold"))
        matched = expect_clear(match_rois, a, b, t, names=("rois", "gt_boxes", "iou_threshold"))
    n = a.shape[0] if a.ndim == 2 else None
    for result in (size, ok, out, best, near, matched):
        if result is not None:
            assert result.shape[0] == n
    if best is not None:
        assert ((best >= 0) & (best <= 1 + 1e-6)).all()
    if ok is not None and out is not None and well_formed(a) and not (math.isnan(lo) or math.isnan(hi)):
        assert not (ok & out).any()  # in range and out of range at once
    if inside is not None:
        assert inside.shape == (b.shape[0], a.shape[0])  # [windows, boxes]


@covers(encode_boxes, decode_boxes)
@given(a=boxes(wrong_dtypes=False), b=boxes(wrong_dtypes=False))
def test_box_coding(a, b):
    k = min(a.shape[0], b.shape[0]) if a.ndim == 2 and b.ndim == 2 else 0
    rois, gt = (a[:k], b[:k]) if a.ndim == 2 and b.ndim == 2 else (a, b)
    with time_bound(1.0):
        deltas = expect_clear(encode_boxes, rois, gt, names=("rois", "gt"))
        if deltas is not None:
            decoded = expect_clear(decode_boxes, rois, deltas, names=("rois", "deltas"))
            if decoded is not None:
                assert decoded.shape == rois.shape


@covers(invalidate_anchors)
@given(anchors=boxes(), gt=boxes(), t=hostile_floats())
def test_invalidate_anchors(anchors, gt, t):
    valid = torch.zeros(gt.shape[0] if gt.ndim else 0, dtype=torch.bool)
    with time_bound(1.0):
        out = expect_clear(invalidate_anchors, anchors, gt, valid, t,
                           names=("anchors", "gt_boxes", "gt_valid", "iou_threshold"))
    if out is not None:
        assert out.dtype == torch.bool and out.shape[0] == anchors.shape[0]


@covers(sample_negatives)
@given(pools=st.lists(hostile_ints(), max_size=4), k=hostile_ints())
def test_sample_negatives(pools, k):
    pools = [p for p in pools if abs(p) < 10 ** 6]
    with time_bound(1.0):
        picks = expect_clear(sample_negatives, pools, k, np.random.default_rng(0), names=("pool_sizes", "k"))
    if picks is not None:
        assert len(picks) == len(pools)
        for pool, pick in zip(pools, picks):
            assert len(pick) <= min(max(k, 0), max(pool, 0)) and len(set(pick.tolist())) == len(pick)
