"""SNIPER's chips: generation properties, labels and crops, the chip dataset, the data
(moved from tests/scale/test_scale_chips.py)."""

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
from scalekit.scale import SNIPER_LEVELS, AreaRange, ScaleSpec



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
