"""SNIP and SNIPER: levels, ranges, anchor invalidation, pyramid inference,
chip generation properties, labels and crops, the chip dataset, the data."""

import json
import math
import os

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.utils.data import DataLoader, DistributedSampler

from scalekit.chips import Chip, ChipDataset, ChipGenerator, chip_stats, chip_targets, crop_chip, draw_chips
from scalekit.datasets import CocoDetection
from scalekit.datasets.synthetic import make_synthetic_coco
from scalekit.scale import SNIP_LEVELS, SNIPER_LEVELS, AreaRange, Pyramid, ScaleSpec, invalidate_anchors, resize_image


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


@st.composite
def images_with_boxes(draw):
    h, w = draw(st.integers(60, 1400)), draw(st.integers(60, 1400))
    n = draw(st.integers(0, 25))
    g = np.random.default_rng(draw(st.integers(0, 2**16)))
    size = np.exp(g.uniform(np.log(2), np.log(min(h, w)), n))
    ratio = g.uniform(0.3, 3.0, n)
    bw, bh = np.minimum(size * np.sqrt(ratio), w), np.minimum(size / np.sqrt(ratio), h)
    x, y = g.uniform(0, 1, n) * (w - bw), g.uniform(0, 1, n) * (h - bh)
    return torch.tensor(np.stack([x, y, x + bw, y + bh], 1), dtype=torch.float32).reshape(-1, 4), (h, w)


def _inside(box, chip_box, tol=1e-3):
    return bool((box[:2] >= chip_box[:2] - tol).all() and (box[2:] <= chip_box[2:] + tol).all())


class TestChips:
    @given(data=images_with_boxes(), stride=st.sampled_from([32, 57]))
    def test_every_coverable_valid_box_is_inside_a_positive_chip(self, data, stride):
        boxes, size = data
        gen = ChipGenerator(stride=stride)
        with _no_check():
            chips = gen.positive_chips(boxes, size)
        uncoverable = gen.uncoverable(boxes, size)
        h, w = size
        for level, (spec, area) in enumerate(gen.levels):
            f = spec.factor(h, w)
            valid = area.valid_mask(boxes).nonzero().flatten().tolist()
            level_chips = [c for c in chips if c.level == level]
            for c in level_chips:
                canvas = torch.tensor([0.0, 0, w * f, h * f])
                scaled = c.box.double() * f
                if w * f > gen.chip_size or h * f > gen.chip_size:
                    # inside the resized image along every axis longer than a chip
                    if w * f > gen.chip_size:
                        assert scaled[0] >= -1e-3 and scaled[2] <= canvas[2] + 1e-2
                    if h * f > gen.chip_size:
                        assert scaled[1] >= -1e-3 and scaled[3] <= canvas[3] + 1e-2
                else:
                    assert scaled[0].abs() < 1e-3 and scaled[1].abs() < 1e-3  # the zero-padded whole image
                # gt_index: exactly the valid boxes fully inside the window
                clipped = boxes.clone()
                clipped[:, 0::2] = clipped[:, 0::2].clamp(0, w)
                clipped[:, 1::2] = clipped[:, 1::2].clamp(0, h)
                strictly = [i for i in valid if _inside(clipped[i], c.box, tol=-1e-2)]
                assert set(strictly) <= set(c.gt_index.tolist()) <= set(valid)
                for i in c.gt_index.tolist():
                    assert _inside(clipped[i], c.box, tol=1e-2)
            covered = set().union(*[set(c.gt_index.tolist()) for c in level_chips]) if level_chips else set()
            assert covered | set(uncoverable.get(level, [])) >= set(valid)
            for i in uncoverable.get(level, []):  # only boxes too large for a chip there
                bw, bh = (boxes[i, 2:] - boxes[i, :2]).clamp(max=torch.tensor([w, h])) * f
                assert max(bw, bh) > gen.chip_size - stride - 1

    @given(data=images_with_boxes())
    def test_negative_chips_hold_enough_uncovered_proposals(self, data):
        boxes, size = data
        g = np.random.default_rng(0)
        h, w = size
        xy = g.uniform(0, 1, (300, 2)) * [w, h]
        proposals = torch.tensor(np.concatenate([xy, xy + np.exp(g.uniform(1, 5, (300, 2)))], 1), dtype=torch.float32)
        gen = ChipGenerator(neg_min_proposals=(5, 5, 5))
        with _no_check():
            positives = gen.positive_chips(boxes, size)
            negatives = gen.negative_chips(boxes, size, proposals, positives)
        clipped = proposals.clone()
        clipped[:, 0::2] = clipped[:, 0::2].clamp(0, w)
        clipped[:, 1::2] = clipped[:, 1::2].clamp(0, h)
        for c in negatives:
            assert c.kind == "neg"
            area = gen.levels[c.level][1]
            valid = area.valid_mask(proposals)
            pos_boxes = [p.box for p in positives if p.level == c.level]
            fresh = [i for i in range(len(proposals)) if valid[i] and _inside(clipped[i], c.box)
                     and not any(_inside(clipped[i], pb, tol=-1e-3) for pb in pos_boxes)]
            assert len(fresh) >= 5

    def test_generate_samples_negatives_deterministically(self):
        boxes = torch.tensor([[10.0, 10, 40, 40], [400, 300, 600, 450]])
        g = np.random.default_rng(1)
        xy = g.uniform(0, 1, (400, 2)) * [640, 480]
        proposals = torch.tensor(np.concatenate([xy, xy + 20], 1), dtype=torch.float32)
        gen = ChipGenerator(neg_min_proposals=3)
        a = gen.generate(boxes, (480, 640), proposals, np.random.default_rng(7))
        b = gen.generate(boxes, (480, 640), proposals, np.random.default_rng(7))
        assert [c.box.tolist() for c in a] == [c.box.tolist() for c in b]
        assert sum(c.kind == "neg" for c in a) == 2
        assert len(gen.generate(boxes, (480, 640))) == len(gen.positive_chips(boxes, (480, 640)))
        by_seed = gen.generate(boxes, (480, 640), proposals, 7)
        by_torch = gen.generate(boxes, (480, 640), proposals, torch.Generator().manual_seed(7))
        assert len(by_seed) == len(by_torch) == len(a)
        with pytest.raises(TypeError, match="generator must be None, an int seed"):
            gen.generate(boxes, (480, 640), proposals, "seven")

    def test_box_too_large_for_its_level_is_reported(self):
        gen = ChipGenerator(levels=((ScaleSpec.fixed(4.0), AreaRange(0, 200)),))
        sliver = torch.tensor([[0.0, 0, 10, 300]])  # sqrt(area) 55: valid, but 1200 px tall at 4x
        with pytest.warns(UserWarning, match="do not fit a 512 px chip"):
            assert gen.positive_chips(sliver, (400, 400)) == []
        assert gen.uncoverable(sliver, (400, 400)) == {0: [0]}


class _no_check:
    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)


class TestCrops:
    def test_chip_targets_crop_and_flag(self):
        chip = Chip(1, 2.0, torch.tensor([100.0, 100, 356, 356]))
        boxes = torch.tensor([[110.0, 120, 150, 160], [300, 300, 500, 500], [0, 0, 50, 50]])
        target = {"boxes": boxes, "labels": torch.tensor([1, 2, 3])}
        t = chip_targets(chip, target, SNIPER_LEVELS[1][1])
        torch.testing.assert_close(t["boxes"], torch.tensor([[20.0, 40, 100, 120]]))
        torch.testing.assert_close(t["ignore_boxes"], torch.tensor([[400.0, 400, 512, 512]]))
        assert t["labels"].tolist() == [1] and t["index"].tolist() == [0]  # 40 px is in (32, 150); 200 px is not
        t = chip_targets(chip, target, SNIPER_LEVELS[1][1], min_size=150)
        assert len(t["boxes"]) == 0 and len(t["ignore_boxes"]) == 0

    def test_crop_maps_pixels_like_boxes(self):
        image = torch.zeros(1, 300, 400)
        image[0, 150:160, 200:210] = 1.0  # a 10 px square at (200, 150)
        chip = Chip(0, 2.0, torch.tensor([180.0, 130, 436, 386]))
        pixels, t = crop_chip(image, {"boxes": torch.tensor([[200.0, 150, 210, 160]]), "labels": torch.tensor([1])}, chip)
        x1, y1, x2, y2 = t["boxes"][0].round().int().tolist()
        assert (x1, y1, x2, y2) == (40, 40, 60, 60)
        assert pixels[0, y1 + 2 : y2 - 2, x1 + 2 : x2 - 2].min() > 0.9
        assert pixels[0, :30].max() == 0 and pixels[0, 250:].max() == 0  # past the image


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    return make_synthetic_coco(str(root), num_images=4, seed=0)


class TestDataAndDataset:
    def test_synthetic_is_seeded_coco(self, data, tmp_path):
        images, ann = data
        again = make_synthetic_coco(str(tmp_path), num_images=4, seed=0)[1]
        assert json.load(open(ann)) == json.load(open(again))
        ds = CocoDetection(images, ann)
        coco = json.load(open(ann))
        first = [a for a in coco["annotations"] if a["image_id"] == ds.ids[0]]
        boxes, labels, size = ds.annotations(0)
        x, y, w, h = first[0]["bbox"]
        assert boxes[0].tolist() == [x, y, x + w, y + h] and labels[0] == first[0]["category_id"]
        image, target = ds[0]
        assert tuple(image.shape[1:]) == size and 0 <= image.min() and image.max() <= 1
        sizes = [math.sqrt(a["area"]) for a in coco["annotations"]]
        assert min(sizes) >= 4 and max(sizes) <= 400

    def test_clear_errors(self, data, tmp_path):
        images, ann = data
        with pytest.raises(FileNotFoundError, match="no such annotation file"):
            CocoDetection(images, str(tmp_path / "missing.json"))
        bad = json.load(open(ann))
        bad["annotations"][0]["bbox"] = [1, 2, 3]
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        with pytest.raises(ValueError, match="malformed bbox"):
            CocoDetection(images, str(tmp_path / "bad.json"))
        os.makedirs(tmp_path / "empty", exist_ok=True)
        with pytest.raises(FileNotFoundError, match="image files named in .* do not exist"):
            CocoDetection(str(tmp_path / "empty"), ann)
        with pytest.raises(FileNotFoundError, match="no such file"):
            CocoDetection(str(tmp_path / "empty"), ann, check_files=False)[0]

    def test_chip_dataset_feeds_a_detector_and_resamples_negatives(self, data):
        images, ann = data
        ds = CocoDetection(images, ann)
        g = np.random.default_rng(0)
        proposals = []
        for i in range(len(ds)):
            _, _, (h, w) = ds.annotations(i)
            xy = g.uniform(0, 1, (300, 2)) * [w, h]
            proposals.append(torch.tensor(np.concatenate([xy, xy + 25], 1), dtype=torch.float32))
        chips = ChipDataset(ds, ChipGenerator(neg_min_proposals=3), proposals=proposals, seed=0)
        first = [(i, c.box.tolist()) for i, c in chips.items]
        pixels, target = chips[0]
        assert pixels.shape == (3, 512, 512)
        assert ((target["boxes"] >= 0) & (target["boxes"] <= 512)).all()
        assert set(target) >= {"boxes", "labels", "ignore_boxes", "image_index", "chip"}
        chips.set_epoch(1)
        assert [(i, c.box.tolist()) for i, c in chips.items] != first  # new negatives
        chips.set_epoch(0)
        assert [(i, c.box.tolist()) for i, c in chips.items] == first  # seeded
        sampler = DistributedSampler(chips, num_replicas=2, rank=1, shuffle=True, seed=0)
        loader = DataLoader(chips, batch_size=2, sampler=sampler, collate_fn=ChipDataset.collate_fn)
        batch_images, batch_targets = next(iter(loader))
        assert len(batch_images) == 2 and batch_targets[0]["boxes"].shape[1] == 4

    def test_stats_and_pictures(self, data, tmp_path):
        images, ann = data
        ds = CocoDetection(images, ann)
        annotations = [ds.annotations(i)[::2] for i in range(len(ds))]
        stats = chip_stats(ChipGenerator(), annotations)
        assert stats["coverage"] == 1.0 and stats["chips_per_image"] >= 1 and stats["pixel_ratio"] > 0
        image, target = ds[0]
        chips = ChipGenerator().positive_chips(target["boxes"], tuple(image.shape[1:]))
        draw_chips(image, chips, target["boxes"], tmp_path / "chips.png")
        assert (tmp_path / "chips.png").stat().st_size > 1000


def test_chip_items_train_a_torchvision_detector(data):
    import torchvision

    images, ann = data
    chips = ChipDataset(CocoDetection(images, ann), ChipGenerator())
    torch.manual_seed(0)
    model = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, num_classes=4)
    model.train()
    batch = [chips[i] for i in range(2)]
    losses = model([image for image, _ in batch], [{"boxes": t["boxes"], "labels": t["labels"]} for _, t in batch])
    total = sum(losses.values())
    total.backward()
    assert torch.isfinite(total) and {"loss_classifier", "loss_box_reg", "loss_objectness"} <= set(losses)
