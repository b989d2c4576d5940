"""The fuzz helpers themselves: each outcome they must reject is rejected."""

import math
import time

import pytest
import torch
from hypothesis import given

from scalekit.boxes import box_area, box_iou
from tests.fuzz.hostile import (EXAMPLES, TimeBoundExceeded, boxes, covers, expect_clear, hostile_numbers, images,
                                segments, time_bound)


def test_expect_clear_accepts_a_named_error():
    def f(iou_threshold):
        raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
    before = EXAMPLES[0]
    assert expect_clear(f, 2.0, names=("iou_threshold",)) is None
    assert EXAMPLES[0] == before + 1


def test_expect_clear_rejects_an_error_naming_nothing():
    def f(x):
        raise TypeError("'float' object is not iterable")
    with pytest.raises(AssertionError, match="naming none of"):
        expect_clear(f, 3.0, names=("output_size",))


def test_expect_clear_matches_whole_names_only():
    def f(x):
        raise ValueError("boxes_per_image must be positive")
    with pytest.raises(AssertionError):
        expect_clear(f, 0, names=("boxes",))


def test_expect_clear_lets_other_exceptions_through():
    def f(x):
        raise IndexError("index 3 is out of bounds")
    with pytest.raises(IndexError):
        expect_clear(f, 0, names=("x",))


def test_time_bound_fails_a_slow_block():
    with pytest.raises(TimeBoundExceeded):
        with time_bound(0.01):
            time.sleep(0.05)


@given(b=boxes(), n=hostile_numbers(), img=images(), s=segments())
def test_strategies_draw_what_they_promise(b, n, img, s):
    assert isinstance(b, torch.Tensor) and isinstance(img, torch.Tensor)
    assert s.ndim == 2 and s.shape[1] == 2


@covers(box_area, box_iou)
@given(a=boxes(), b=boxes())
def test_box_area_and_iou_on_hostile_boxes(a, b):
    """Areas and IoU of any well-shaped float boxes are computed (NaN in, NaN out, no
    error); malformed shapes are refused naming the argument."""
    with time_bound(2.0):
        area = expect_clear(box_area, a, names=("boxes",))
        iou = expect_clear(box_iou, a, b, names=("boxes1", "boxes2"))
    if area is not None:
        assert area.shape == a.shape[:1]
        finite = torch.isfinite(a).all(1) & (a[:, 2] >= a[:, 0]) & (a[:, 3] >= a[:, 1])
        assert (area[finite] >= 0).all()
    if iou is not None:
        assert iou.shape == (a.shape[0], b.shape[0])
        ok = iou[~iou.isnan()]
        assert ((ok >= 0) & (ok <= 1 + 1e-6)).all() or not math.isfinite(float(a.abs().max(initial=0)))
