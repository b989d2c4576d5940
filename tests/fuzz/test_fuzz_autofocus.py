"""Hostile input for AutoFocus (scalekit.autofocus): labels, the focus loss, chips
from hostile maps, the border rule and the recursive inference's settings and
detector outputs. Each call keeps its contract or names the bad argument."""

import math

import numpy as np
import torch
from hypothesis import given, strategies as st

from scalekit.autofocus import (AutoFocus, FocusHead, focus_chips, focus_labels, focus_loss, grid_size,
                                label_components, near_chip_border)
from scalekit.scale import AreaRange, ScaleSpec
from tests.fuzz.hostile import boxes, covers, expect_clear, hostile_floats, hostile_ints, hostile_numbers, time_bound

LEVELS = ((ScaleSpec.fixed(0.5), AreaRange(20, math.inf)), (ScaleSpec.fixed(1.0), AreaRange(0, 40)))


@covers(focus_labels, grid_size)
@given(b=boxes(), h=hostile_numbers(), stride=hostile_numbers(), small=hostile_numbers(), low=hostile_numbers())
def test_focus_labels(b, h, stride, small, low):
    with time_bound(2.0):
        labels = expect_clear(focus_labels, b, (h, 64), stride=stride, small=small, ignore_below=low,
                              names=("boxes", "image_size", "stride", "small", "ignore_below", "ignore_until",
                                     "ignore_below < small <= ignore_until"))
        grid = expect_clear(grid_size, (h, 64), stride, names=("image_size", "stride"))
    if labels is not None:
        assert labels.dtype == torch.int64 and set(labels.unique().tolist()) <= {-1, 0, 1}
        assert tuple(labels.shape) == grid


@covers(focus_loss)
@given(h=st.integers(0, 5), w=st.integers(0, 5), label=hostile_ints(), dtype=st.sampled_from(
    [torch.int64, torch.int32, torch.float32, torch.bool]), logit=hostile_floats())
def test_focus_loss(h, w, label, dtype, logit):
    labels = torch.full((1, h, w), label if abs(label) < 2 ** 31 else 0).to(dtype)
    with time_bound(1.0):
        logits = torch.full((1, 2, h, w), logit, dtype=torch.float64)
        loss = expect_clear(focus_loss, logits, labels, names=("labels", "logits"))
    if loss is not None:
        assert loss.dim() == 0


def _bounded(value):
    """A valid but enormous width becomes 64: memory stays bounded (as tests/fuzz/test_fuzz_heads.py does)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and abs(int(value)) > 64:
        return 64
    return value


@covers(FocusHead)
@given(channels=hostile_numbers(), mid=hostile_numbers())
def test_focus_head_settings(channels, mid):
    with time_bound(2.0):
        head = expect_clear(FocusHead, _bounded(channels), _bounded(mid), names=("in_channels", "mid_channels"))
    if head is not None:
        logits = head(torch.rand(1, head.conv.in_channels, 3, 4))
        assert logits.shape == (1, 2, 3, 4) and torch.isfinite(logits).all()


@covers(focus_chips, label_components)
@given(h=st.integers(0, 12), w=st.integers(0, 12), fill=st.sampled_from([0.0, 0.5, 1.0, math.nan, math.inf, -1.0]),
       threshold=hostile_numbers(), dilation=hostile_numbers(), min_chip=hostile_numbers(),
       size=st.tuples(hostile_numbers(), st.integers(1, 200)))
def test_focus_chips(h, w, fill, threshold, dilation, min_chip, size):
    focus = torch.zeros(h, w)
    if h and w:
        focus[h // 2, w // 2] = fill
    with time_bound(2.0):
        chips = expect_clear(focus_chips, focus, size, threshold=threshold, dilation=dilation, min_chip=min_chip,
                             names=("focus", "image_size", "threshold", "dilation", "min_chip"))
        labels = expect_clear(label_components, focus > 0, names=("mask",))
    if chips is not None:
        assert chips.shape[-1] == 4 and torch.isfinite(chips).all()
        assert (chips[:, 2] > chips[:, 0]).all() and (chips[:, 3] > chips[:, 1]).all()
    if labels is not None:
        assert labels.shape == focus.shape


@covers(near_chip_border)
@given(b=boxes(), chip=st.lists(hostile_floats(), min_size=3, max_size=5), border=hostile_numbers())
def test_near_chip_border(b, chip, border):
    with time_bound(1.0):
        drop = expect_clear(near_chip_border, b, chip, (100, 100), border,
                            names=("boxes", "chip", "border"))
    if drop is not None:
        assert drop.dtype == torch.bool and drop.shape == b.shape[:1]


SETTINGS = ("thresholds", "dilations", "min_chips", "stride", "border", "sigma", "max_detections")


@covers(AutoFocus, AutoFocus.detect)
@given(setting=st.sampled_from(SETTINGS), value=st.one_of(hostile_numbers(), st.lists(hostile_numbers(), max_size=2)),
       data=st.data())
def test_autofocus_settings_then_detect(setting, value, data):
    with time_bound(2.0):
        kwargs = {"thresholds": (0.5,), "dilations": (3,), "min_chips": (2,), setting: value}
        af = expect_clear(AutoFocus, LEVELS, **kwargs, names=(setting, f"{setting}[0]", f"{setting}[1]"))
    if af is None:
        return
    n = data.draw(st.integers(0, 4))
    b = data.draw(boxes(max_boxes=n, wrong_shapes=False))
    focus_fill = data.draw(st.sampled_from([0.0, 1.0, math.nan]))

    def detector(image):
        cells = (-(-image.shape[-2] // af.stride), -(-image.shape[-1] // af.stride))
        k = b.shape[0]
        return {"boxes": b, "scores": torch.linspace(0.9, 0.1, k), "labels": torch.ones(k, dtype=torch.int64),
                "focus": torch.full(cells, focus_fill)}

    with time_bound(3.0):
        out = expect_clear(af.detect, detector, torch.rand(3, 40, 60),
                           names=("boxes", "focus", "detector", "level 0, chip 0", "level 1, chip 0"))
    if out is not None:
        assert torch.isfinite(out["boxes"]).all() and len(out["pixel_fraction"]) == 2
        assert out["pixel_fraction"][0] == 1.0 and 0.0 <= out["pixel_fraction"][1] <= 1.0 + 1e-9
