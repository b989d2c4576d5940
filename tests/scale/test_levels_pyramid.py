"""SNIP: levels, ranges, anchor invalidation, pyramid inference (the chips are in tests/chips/)."""

import math

import numpy as np
import pytest
import torch

from scalekit.scale import (SNIP_LEVELS, SNIPER_LEVELS, AreaRange, Pyramid, ScaleSpec, invalidate_anchors, resize_image,
                            scaled_levels, tune_ranges)


class TestLevels:
    def test_factors(self):
        assert ScaleSpec.shorter_side(480, 800).factor(600, 800) == 0.8
        assert ScaleSpec.shorter_side(1400, 2000).factor(480, 640) == pytest.approx(1400 / 480)
        assert ScaleSpec.shorter_side(1400, 2000).factor(480, 1000) == pytest.approx(2000 / 1000)
        assert ScaleSpec.fit_longer(512).factor(1000, 400) == 0.512
        with pytest.raises(ValueError, match="image size must be positive"):
            ScaleSpec.fixed(2.0).factor(0, 10)
        with pytest.raises(ValueError, match="finite size > 0"):
            ScaleSpec.fixed(-1.0)
        for bad in (float("nan"), float("inf")):
            with pytest.raises(ValueError, match="finite size > 0"):
                ScaleSpec.shorter_side(bad)
        with pytest.raises(ValueError, match="max_size"):
            ScaleSpec.shorter_side(800, float("nan"))
        assert ScaleSpec.fixed(np.float32(2.0)).factor(10, 10) == 2.0  # numpy scalars are numbers

    def test_scaled_specs_and_ranges_multiply_every_pixel_size(self):
        assert ScaleSpec.shorter_side(800, 1200).scaled(0.5) == ScaleSpec.shorter_side(400, 600)
        assert ScaleSpec.fit_longer(512).scaled(0.25) == ScaleSpec.fit_longer(128)
        assert ScaleSpec.fixed(3.0).scaled(0.5) == ScaleSpec.fixed(3.0)  # a factor has no pixels
        assert AreaRange(40, 160, rpn=(0, 160)).scaled(0.5) == AreaRange(20, 80, rpn=(0, 80))
        assert AreaRange(120).scaled(2).hi == math.inf
        # the same factor on an image of the scaled size: a level sees the same objects
        spec = ScaleSpec.shorter_side(800, 1200)
        assert spec.scaled(0.5).factor(240, 320) == pytest.approx(spec.factor(480, 640))
        with pytest.raises(ValueError, match="s must be finite"):
            AreaRange(0, 80).scaled(float("nan"))

    def test_ranges_are_half_open_and_paired_small_with_large_scales(self):
        boxes = torch.tensor([[0.0, 0, 80, 80], [0, 0, 79.9, 80], [0, 0, 120, 120]])
        assert AreaRange(0, 80).valid_mask(boxes).tolist() == [False, True, False]
        assert AreaRange(120).valid_mask(boxes).tolist() == [False, False, True]
        with pytest.raises(ValueError, match="0 <= lo < hi"):
            AreaRange(50, 40)
        # smaller objects train where the image is enlarged
        for levels in (SNIP_LEVELS, SNIPER_LEVELS):
            factors = [spec.factor(480, 640) for spec, _ in levels]
            assert factors == sorted(factors, reverse=True)
            assert [a.lo for _, a in levels] == sorted(a.lo for _, a in levels)

    def test_the_rpn_range_of_a_level(self):
        middle = SNIP_LEVELS[1][1]
        assert (middle.lo, middle.hi) == (40.0, 160.0) and middle.rpn_range == AreaRange(0, 160)  # §2.7.1
        assert AreaRange(0, 80).rpn_range == AreaRange(0, 80)  # none given: the classifier's range
        with pytest.raises(ValueError, match="0 <= lo < hi"):
            AreaRange(40, 160, rpn=(160, 0))

    def test_invalidate_anchors_strictly_above_threshold(self):
        gt = torch.tensor([[0.0, 0, 10, 10]])
        anchors = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 30], [0, 0, 13, 10], [20, 20, 30, 30]])
        # IoUs: 1, 1/3, 10/13, 0 (an anchor at exactly 0.3 would stay)
        ignored = invalidate_anchors(anchors, gt, torch.tensor([False]))
        assert ignored.tolist() == [True, True, True, False]
        assert not invalidate_anchors(anchors, gt, torch.tensor([True])).any()
        exactly = torch.tensor([[0.0, 0, 10, 3]])  # IoU 0.3
        assert not invalidate_anchors(exactly, gt, torch.tensor([False])).any()


class TestPyramid:
    @staticmethod
    def detector(boxes_per_call):
        calls = iter(boxes_per_call)

        def detect(image):
            boxes, scores, labels = next(calls)
            return torch.tensor(boxes, dtype=torch.float32), torch.tensor(scores), torch.tensor(labels)

        return detect

    def test_levels_filter_map_back_and_merge(self):
        levels = ((ScaleSpec.fixed(2.0), AreaRange(0, 50)), (ScaleSpec.fixed(0.5), AreaRange(40)))
        # level 0 sees the image at 2x: a 40 px box is 20 px in the original (valid); a 200 px one is 100 (invalid)
        # level 1 at 0.5x: a 30 px box is 60 px (valid); a 5 px box is 10 (invalid)
        det = self.detector([([[20, 20, 60, 60], [0, 0, 200, 200]], [0.9, 0.8], [1, 1]),
                             ([[5, 5, 35, 35], [0, 0, 5, 5]], [0.7, 0.6], [1, 1])])
        out = Pyramid(levels).detect(det, torch.zeros(3, 100, 100))
        torch.testing.assert_close(out["boxes"], torch.tensor([[10.0, 10, 30, 30], [10, 10, 70, 70]]))
        iou = 400 / 3600  # the two survivors overlap: Gaussian Soft-NMS decays the second
        torch.testing.assert_close(out["scores"], torch.tensor([0.9, 0.7 * math.exp(-iou * iou / 0.55)]))

    def test_classes_merge_separately_and_cap(self):
        levels = ((ScaleSpec.fixed(1.0), AreaRange()),)
        det = self.detector([([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], [0.9, 0.8, 0.7], [1, 2, 1])])
        out = Pyramid(levels, max_detections=2).detect(det, torch.zeros(3, 50, 50))
        assert out["labels"].tolist() == [1, 2] and out["scores"].tolist()[:2] == pytest.approx([0.9, 0.8])

    def test_bad_factors_and_detector_outputs(self):
        with pytest.raises(ValueError, match="factor must be a positive finite number"):
            resize_image(torch.rand(3, 8, 8), -2)
        with pytest.raises(ValueError, match="factor must be a positive finite number"):
            resize_image(torch.rand(3, 8, 8), float("nan"))
        dets = Pyramid(((ScaleSpec.shorter_side(8, 8), AreaRange()),)).detect(
            lambda image: {"boxes": torch.tensor([[1.0, 1, 4, 4]]), "scores": torch.tensor([0.5]), "labels": torch.tensor([2])},
            torch.rand(3, 8, 8))
        assert dets["labels"].tolist() == [2]  # torchvision-style dicts are accepted


def _seeded_detector(image):
    """Thirty boxes, scores and labels that depend only on the input's size (so each level differs)."""
    h, w = image.shape[-2:]
    g = torch.Generator().manual_seed(h * 10007 + w)
    xy = torch.rand(30, 2, generator=g) * torch.tensor([w, h]) * 0.8
    wh = torch.rand(30, 2, generator=g) * torch.tensor([w, h]) * 0.4 + 2
    return torch.cat([xy, xy + wh], 1), torch.rand(30, generator=g), torch.randint(1, 4, (30,), generator=g)


def test_tune_ranges_scores_each_candidate_as_the_pyramid_detects_with_it():
    pyramid = Pyramid(scaled_levels(SNIP_LEVELS, 0.1))
    images = [torch.rand(3, 120, 160), torch.rand(3, 90, 200), torch.rand(3, 64, 64)]
    per_level = [pyramid.with_ranges([AreaRange()] * 3).detect_levels(_seeded_detector, im) for im in images]
    trained = [area for _, area in pyramid.levels]
    candidates = [trained, [AreaRange()] * 3, [AreaRange(a.lo / 2, a.hi * 2) for a in trained],
                  [AreaRange(0, 4), AreaRange(4, 12), AreaRange(12, math.inf)]]

    def score(merged):  # any deterministic function of the merged detections
        return sum(float((m["scores"] * m["labels"]).sum() + m["boxes"].sum() / 1e3) for m in merged)

    best, scores = tune_ranges(pyramid, per_level, candidates, score)
    direct = [[pyramid.with_ranges(c).detect(_seeded_detector, im) for im in images] for c in candidates]
    assert scores == [score(d) for d in direct]  # exactly: the same filtering and merge as Pyramid.detect
    assert len(set(scores)) == len(scores)  # the candidates do differ here
    assert [a for _, a in best.levels] == candidates[scores.index(max(scores))]
    assert (best.sigma, best.max_detections) == (pyramid.sigma, pyramid.max_detections)


def test_tune_ranges_refuses_mismatched_levels():
    pyramid = Pyramid(SNIP_LEVELS)
    with pytest.raises(ValueError, match="3 AreaRange"):
        tune_ranges(pyramid, [], [[AreaRange()]], float)
    with pytest.raises(ValueError, match=r"per_level\[0\] must have one entry per level \(3\)"):
        tune_ranges(pyramid, [[{}]], [[AreaRange()] * 3], float)
    with pytest.raises(ValueError, match="at least one"):
        tune_ranges(pyramid, [], [], float)
