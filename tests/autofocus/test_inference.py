"""Recursive AutoFocus inference with a fake detector and fake focus maps: what
reaches the model at each scale, the border and range pruning, the report."""

import math

import pytest
import torch

from scalekit.autofocus import AutoFocus, near_chip_border
from scalekit.scale import AreaRange, ScaleSpec, resize_image

LEVELS = ((ScaleSpec.fixed(0.5), AreaRange(40, math.inf)), (ScaleSpec.fixed(1.0), AreaRange(10, 60)),
          (ScaleSpec.fixed(2.0), AreaRange(0, 20)))


def _image():
    g = torch.Generator().manual_seed(0)
    return torch.rand(3, 200, 300, generator=g)


class FakeDetector:
    """Returns, call by call, the given detections (in the pixels of the image it gets)
    and a focus map with 1 at the given cells; records every image it gets."""

    def __init__(self, calls):
        self.calls, self.seen = list(calls), []

    def __call__(self, image):
        self.seen.append(image.clone())
        cells, boxes = self.calls.pop(0) if self.calls else ([], [])
        focus = torch.zeros(-(-image.shape[-2] // 16), -(-image.shape[-1] // 16))
        for y, x in cells:
            focus[y, x] = 1.0
        boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
        n = boxes.shape[0]
        return {"boxes": boxes, "scores": torch.linspace(0.9, 0.5, n) if n else torch.zeros(0),
                "labels": torch.ones(n, dtype=torch.int64), "focus": focus}


def _autofocus(**kwargs):
    return AutoFocus(LEVELS, thresholds=(0.5, 0.5), dilations=(3, 3), min_chips=(4, 4), **kwargs)


def test_finer_scales_see_only_the_chips_of_the_scale_before():
    image = _image()
    fake = FakeDetector([([(2, 3)], []), ([(1, 1)], []), ([], [])])
    out = _autofocus().detect(fake, image)
    # level 0, factor 0.5: the whole image. Its FocusPixel (2, 3), dilated to cells 1..3 x 2..4 and grown
    # to 4 cells, is the chip x 1..5, y 0..4 (cells of 16 px at 0.5): x 32..160, y 0..128 in the image.
    # level 1, factor 1: that crop only. Its FocusPixel (1, 1) gives cells 0..4 x 0..4: x 32..96, y 0..64.
    # level 2, factor 2: that crop only, at twice its size.
    expected = [resize_image(image, 0.5)[0], image[:, 0:128, 32:160], resize_image(image[:, 0:64, 32:96], 2.0)[0]]
    assert [tuple(s.shape) for s in fake.seen] == [(3, 100, 150), (3, 128, 128), (3, 128, 128)]
    for seen, want in zip(fake.seen, expected):
        assert torch.equal(seen, want)
    assert [c.tolist() for c in out["chips"]] == [[[0.0, 0.0, 300.0, 200.0]], [[32.0, 0.0, 160.0, 128.0]],
                                                 [[32.0, 0.0, 96.0, 64.0]]]
    assert out["pixel_fraction"] == [1.0, 128 * 128 / (200 * 300), 128 * 128 / (400 * 600)]


def test_border_detections_and_out_of_range_ones_are_dropped():
    level0 = [[0.0, 0, 25, 25],     # 50 px in the image: in [40, inf), kept
              [100, 25, 110, 35]]   # 20 px in the image: out of range at level 0
    level1 = [[0.0, 40, 30, 70],    # on the chip's left edge (x 32, inside the image): dropped
              [40, 0, 70, 30],      # on the chip's top edge, which is the image's own edge: kept
              [40, 40, 70, 70],     # inside: kept
              [95, 40, 123, 68],    # right edge 5 px from the chip's (x 160): dropped
              [90, 80, 116, 106],   # 12 px from the right edge, 22 from the bottom: kept
              [0.0, 80, 4, 84]]     # 4 px: out of [10, 60) at level 1
    fake = FakeDetector([([(2, 3)], level0), ([], level1)])
    out = _autofocus().detect(fake, _image())
    kept = sorted(out["boxes"].tolist())
    assert kept == sorted([[0.0, 0, 50, 50], [72, 0, 102, 30], [72, 40, 102, 70], [122, 80, 148, 106]])
    assert len(fake.seen) == 2  # no chip at level 1, so nothing runs at level 2
    assert out["pixel_fraction"][2] == 0.0 and out["chips"][2].shape == (0, 4)


def test_no_focus_no_finer_scale():
    fake = FakeDetector([([], [[0.0, 0, 30, 30]])])
    out = _autofocus().detect(fake, _image())
    assert len(fake.seen) == 1 and out["pixel_fraction"] == [1.0, 0.0, 0.0]
    assert out["boxes"].tolist() == [[0.0, 0.0, 60.0, 60.0]]


def test_chips_from_two_parents_stay_inside_their_parents():
    # two separate FocusPixels at level 0 give two chips; each gives a chip at its own corner
    fake = FakeDetector([([(1, 1), (5, 8)], []), ([(0, 0)], []), ([(0, 0)], [])])
    out = _autofocus().detect(fake, _image())
    parents, children = out["chips"][1].tolist(), out["chips"][2].tolist()
    assert len(parents) == 2 and len(children) == 2
    for child in children:
        assert any(p[0] <= child[0] and p[1] <= child[1] and child[2] <= p[2] and child[3] <= p[3] for p in parents)


def test_near_chip_border_only_at_interior_edges():
    boxes = torch.tensor([[1.0, 1, 50, 50], [101, 101, 150, 150], [150, 150, 199, 199]])
    assert near_chip_border(boxes, (0, 0, 200, 200), (200, 200)).tolist() == [False, False, False]
    assert near_chip_border(boxes, (100, 100, 200, 200), (400, 400)).tolist() == [False, True, True]
    assert near_chip_border(boxes, (100, 100, 200, 200), (400, 400), border=0.5).tolist() == [False, False, False]


def test_bad_arguments_and_detectors():
    with pytest.raises(ValueError, match="thresholds"):
        AutoFocus(LEVELS, thresholds=(0.5,))
    with pytest.raises(ValueError, match="min_chips"):
        AutoFocus(LEVELS, min_chips=(0, 4))
    with pytest.raises(TypeError, match="levels"):
        AutoFocus([(1, 2)])
    no_focus = lambda image: {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0),
                              "labels": torch.zeros(0, dtype=torch.int64)}
    with pytest.raises(TypeError, match="'focus'"):
        _autofocus().detect(no_focus, _image())
    short = lambda image: {**no_focus(image), "focus": torch.zeros(2, 2)}
    with pytest.raises(ValueError, match="focus must cover"):
        _autofocus().detect(short, _image())
    with pytest.raises(ValueError, match="batch"):
        _autofocus().detect(short, torch.rand(1, 3, 20, 20))
