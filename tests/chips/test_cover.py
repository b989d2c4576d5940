"""The compiled greedy chip cover (``scalekit::chip_cover``) behind ChipGenerator:
equal to a slow box-by-box, window-by-window reference greedy, opcheck, bad input."""

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from scalekit.chips import ChipGenerator
from scalekit.chips.generator import _positions
from scalekit.scale import AreaRange, ScaleSpec

LEVELS = ((ScaleSpec.fixed(2.0), AreaRange(0, 48)), (ScaleSpec.fixed(1.0), AreaRange(32, 120)),
          (ScaleSpec.fit_longer(300), AreaRange(100, math.inf)))


def reference_cover(boxes, need, f, chip, stride, size, min_count=1):
    """SNIPER's greedy, written plainly: at each pick count, for every window in
    raster order (x-major), the needed boxes wholly inside it; take the first best."""
    h, w = size
    xs, ys = _positions(w * f, chip, stride), _positions(h * f, chip, stride)
    s = [[v * f for v in b] for b in boxes]

    def inside(k, x, y):
        return x <= s[k][0] and s[k][2] <= x + chip and y <= s[k][1] and s[k][3] <= y + chip

    left = {k for k in range(len(boxes)) if need[k] and any(inside(k, x, y) for x in xs for y in ys)}
    picks = []
    while left:
        best, where = 0, None
        for x in xs:
            for y in ys:
                n = sum(inside(k, x, y) for k in left)
                if n > best:
                    best, where = n, (x, y)
        if best < min_count:
            break
        members = [k for k in range(len(boxes)) if inside(k, *where)]
        picks.append((where, members))
        left -= set(members)
    return picks


def clipped(boxes, size):
    h, w = size
    return [[min(max(b[0], 0), w), min(max(b[1], 0), h), min(max(b[2], 0), w), min(max(b[3], 0), h)] for b in boxes]


@st.composite
def image_boxes(draw):
    h, w = draw(st.integers(60, 400)), draw(st.integers(60, 400))
    n = draw(st.integers(0, 14))
    boxes = []
    for _ in range(n):
        x1, y1 = draw(st.floats(0, w - 1)), draw(st.floats(0, h - 1))
        bw, bh = draw(st.floats(0.5, 160)), draw(st.floats(0.5, 160))
        boxes.append([x1, y1, x1 + bw, y1 + bh])
    return (h, w), boxes


@settings(max_examples=60, deadline=None)
@given(image_boxes(), st.sampled_from([16, 40]))
def test_positive_chips_equal_the_reference_greedy(case, stride):
    size, boxes = case
    gen = ChipGenerator(chip_size=128, stride=stride, levels=LEVELS)
    with warnings.catch_warnings():  # boxes too large for a chip at their level are reported, not covered
        warnings.simplefilter("ignore")
        chips = gen.positive_chips(torch.tensor(boxes, dtype=torch.float64).reshape(-1, 4), size)
    expected = []
    cb = clipped(boxes, size)
    for level, (spec, area) in enumerate(LEVELS):
        f = spec.factor(*size)
        need = [area.lo <= math.sqrt(max(b[2] - b[0], 0) * max(b[3] - b[1], 0)) < area.hi for b in boxes]
        for (x, y), members in reference_cover(cb, need, f, 128, stride, size):
            expected.append((level, (x, y), [k for k in members if need[k]]))
    got = [(c.level, tuple((c.window).tolist()[:2]), c.gt_index.tolist()) for c in chips]
    assert [(lv, m) for lv, _, m in got] == [(lv, m) for lv, _, m in expected]
    for (_, (gx, gy), _), (_, (ex, ey), _) in zip(got, expected):  # window corners (float32 round trip)
        assert gx == pytest.approx(ex, abs=1e-3) and gy == pytest.approx(ey, abs=1e-3)


def test_negative_chips_respect_the_minimum_count_as_the_reference_does():
    rng = np.random.default_rng(3)
    size = (300, 400)
    xy = rng.uniform(0, 380, (120, 2))
    proposals = np.concatenate([xy, xy + rng.uniform(2, 20, (120, 2))], 1)
    proposals[:, 1::2] = proposals[:, 1::2].clip(max=299)
    gen = ChipGenerator(chip_size=128, stride=24, levels=LEVELS, neg_min_proposals=(9, 5, 3))
    boxes = np.array([[10.0, 10, 30, 30]])
    positives = gen.positive_chips(boxes, size)
    negatives = gen.negative_chips(boxes, size, proposals, positives)
    assert negatives, "the planted proposals must give some negative chips"
    expected = []
    for level, (spec, area) in enumerate(LEVELS):
        f = spec.factor(*size)
        need = [area.lo <= math.sqrt((p[2] - p[0]) * (p[3] - p[1])) < area.hi for p in proposals]
        for c in positives:
            if c.level == level:
                x1, y1, x2, y2 = (c.box.double() * f).tolist()
                for k, p in enumerate(proposals):
                    q = p * f
                    if x1 - 1e-6 <= q[0] and y1 - 1e-6 <= q[1] and q[2] <= x2 + 1e-6 and q[3] <= y2 + 1e-6:
                        need[k] = False
        for (x, y), _ in reference_cover(proposals.tolist(), need, f, 128, 24, size, gen.neg_min_proposals[level]):
            expected.append((level, x, y))
    got = [(c.level, c.window[0].item(), c.window[1].item()) for c in negatives]
    assert [g[0] for g in got] == [e[0] for e in expected]
    np.testing.assert_allclose([g[1:] for g in got], [e[1:] for e in expected], atol=2e-3)


def test_ties_broken_by_the_generator_reproducibly_and_every_box_still_covered():
    boxes = torch.tensor([[100.0, 100, 110, 110]])  # many windows hold it equally
    gen = ChipGenerator(chip_size=128, stride=8, levels=LEVELS[:1])
    a = gen.positive_chips(boxes, (300, 400), generator=1)
    b = gen.positive_chips(boxes, (300, 400), generator=1)
    c = gen.positive_chips(boxes, (300, 400), generator=2)
    assert [x.box.tolist() for x in a] == [x.box.tolist() for x in b]
    assert a[0].box.tolist() != c[0].box.tolist()
    # without a generator: the first window in raster order that holds it (canvas x >= 220 - 128, stride 8)
    assert gen.positive_chips(boxes, (300, 400))[0].box[:2].tolist() == [48.0, 48.0]
    for chips in (a, c):
        assert chips[0].gt_index.tolist() == [0]


def _op_args(n=5, levels=2):
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 200, (n, 2))
    boxes = torch.from_numpy(np.concatenate([xy, xy + rng.uniform(1, 40, (n, 2))], 1))
    need = torch.ones(levels, n, dtype=torch.bool)
    xs = torch.tensor([0.0, 32, 64] * levels, dtype=torch.float64)
    offsets = torch.arange(0, 3 * levels + 1, 3)
    return (boxes, need, torch.ones(levels, dtype=torch.float64), xs, xs.clone(), offsets, offsets.clone(), 128.0,
            [1] * levels)


def test_opcheck():
    torch.library.opcheck(torch.ops.scalekit.chip_cover.default, _op_args())


@pytest.mark.parametrize("change, match", [
    (lambda a: (a[0].float(),) + a[1:], "float64"),
    (lambda a: (a[0][:, :3],) + a[1:], r"boxes must have shape \[N, 4\]"),
    (lambda a: a[:1] + (a[1][:1],) + a[2:], r"need must have shape \[L, N\]"),
    (lambda a: a[:8] + ([1],), "min_count needs one value per level"),
    (lambda a: a[:5] + (torch.tensor([0, 6, 6]),) + a[6:], "at least one window position; level 1"),
    (lambda a: a[:7] + (0.0,) + a[8:], "chip must be > 0"),
])
def test_direct_calls_with_bad_arguments_raise(change, match):
    with pytest.raises((ValueError, TypeError, RuntimeError), match=match):
        torch.ops.scalekit.chip_cover(*change(_op_args()))
