"""One mapping of targets into a window (SNIP and SNIPER), SNIP's level dataset,
the chip datasets' items and the argument checks of chip planning."""

import math
import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from scalekit.boxes import inside_window
from scalekit.chips import (Chip, ChipDataset, ChipGenerator, LevelDataset, chip_targets, crop_chip,
                            sample_negatives)
from scalekit.scale import SNIP_LEVELS, AreaRange, ScaleSpec


def _slow_window_targets(chip, target, area, min_size=0.0):
    """Box by box, the rule as the docstring words it."""
    x1, y1, x2, y2 = chip.box.tolist()
    f = chip.scale
    boxes, labels, ignore = [], [], []
    for kind, rows in (("gt", target["boxes"]), ("crowd", target.get("ignore_boxes", torch.zeros(0, 4)))):
        for n, b in enumerate(rows.tolist()):
            c = [(min(max(b[0], x1), x2) - x1) * f, (min(max(b[1], y1), y2) - y1) * f,
                 (min(max(b[2], x1), x2) - x1) * f, (min(max(b[3], y1), y2) - y1) * f]
            w, h = c[2] - c[0], c[3] - c[1]
            if not (w > 0 and h > 0 and w >= min_size and h >= min_size):
                continue
            size = math.sqrt(max(b[2] - b[0], 0) * max(b[3] - b[1], 0))
            r = area.rpn_range if area is not None else None
            if kind == "gt" and (r is None or r.lo <= size < r.hi):
                boxes.append(c)
                labels.append(int(target["labels"][n]))
            else:
                ignore.append(c)
    return boxes, labels, ignore


class TestWindowMapping:
    chip = Chip(level=1, scale=2.0, box=torch.tensor([100.0, 100, 356, 356]))
    target = {"boxes": torch.tensor([[110.0, 120, 150, 160],    # 40 px, inside: valid
                                     [300, 300, 500, 500],      # 200 px, cut by the window: invalid -> ignore
                                     [0, 0, 50, 50],            # outside: dropped
                                     [340, 100, 420, 140],      # 57 px, cut: valid, cropped
                                     [120, 300, 121, 301]]),    # 1 px: out of range -> ignore
              "labels": torch.tensor([1, 2, 3, 4, 5]),
              "ignore_boxes": torch.tensor([[90.0, 90, 130, 130], [900, 900, 950, 950]])}  # crowd: in, out

    def test_valid_ignore_and_crowd(self):
        t = chip_targets(self.chip, self.target, AreaRange(32, 150))
        torch.testing.assert_close(t["boxes"], torch.tensor([[20.0, 40, 100, 120], [480, 0, 512, 80]]))
        assert t["labels"].tolist() == [1, 4] and t["index"].tolist() == [0, 3]
        torch.testing.assert_close(t["ignore_boxes"], torch.tensor([[400.0, 400, 512, 512], [40, 400, 42, 402],
                                                                    [0, 0, 60, 60]]))
        torch.testing.assert_close(t["valid_range"], torch.tensor([64.0, 300.0]))  # chip pixels

    def test_equals_the_box_by_box_rule(self):
        g = np.random.default_rng(0)
        for trial in range(30):
            xy = g.uniform(-50, 400, (20, 2))
            wh = np.exp(g.uniform(0, 5.5, (20, 2)))
            boxes = torch.tensor(np.concatenate([xy, xy + wh], 1), dtype=torch.float32)
            target = {"boxes": boxes[:15], "labels": torch.arange(1, 16), "ignore_boxes": boxes[15:]}
            chip = Chip(0, float(g.uniform(0.5, 3)), torch.tensor([*g.uniform(0, 100, 2), 0, 0], dtype=torch.float32))
            chip.box[2:] = chip.box[:2] + float(g.uniform(50, 300))
            area = [None, AreaRange(10, 60), AreaRange(40, 160, rpn=(0, 160))][trial % 3]
            min_size = [0.0, 2.0][trial % 2]
            t = chip_targets(chip, target, area, min_size=min_size)
            boxes_, labels_, ignore_ = _slow_window_targets(chip, target, area, min_size)
            torch.testing.assert_close(t["boxes"], torch.tensor(boxes_).reshape(-1, 4), atol=1e-3, rtol=0)
            assert t["labels"].tolist() == labels_
            torch.testing.assert_close(t["ignore_boxes"], torch.tensor(ignore_).reshape(-1, 4), atol=1e-3, rtol=0)
            assert ("valid_range" in t) == (area is not None)

    def test_mst_keeps_every_object_and_the_rpn_range_decides_objects(self):
        t = chip_targets(self.chip, self.target, None)
        assert t["labels"].tolist() == [1, 2, 4, 5] and "valid_range" not in t
        # §2.7.1: RPN range [0, 160] at the middle level: the 1 px box trains the RPN
        t = chip_targets(self.chip, self.target, AreaRange(40, 160, rpn=(0, 160)))
        assert t["labels"].tolist() == [1, 4, 5]
        torch.testing.assert_close(t["valid_range"], torch.tensor([80.0, 320.0]))  # the classifier's range


def _images():
    g = torch.Generator().manual_seed(0)
    return [(torch.rand(3, 200, 300, generator=g),
             {"boxes": torch.tensor([[10.0, 10, 30, 30], [50, 50, 190, 190], [200, 20, 212, 40]]),
              "labels": torch.tensor([1, 2, 3]), "ignore_boxes": torch.tensor([[250.0, 150, 290, 190]])})]


class TestLevelDataset:
    def test_snip_windows_at_the_finest_level_cover_its_valid_objects(self):
        levels = SNIP_LEVELS
        ds = LevelDataset(_images(), levels, chip_sizes=(1000, None, None), seed=0)
        finest = [(im, t) for im, t in ds if t["chip"].level == 0]
        assert len(finest) >= 1 and all(max(im.shape[1:]) <= 1000 for im, _ in finest)
        f = levels[0][0].factor(200, 300)
        covered = set()
        for im, t in finest:
            chip = t["chip"]
            assert chip.box.tolist() == pytest.approx((chip.window / f).tolist())
            assert tuple(im.shape[1:]) == (round(float(chip.window[3] - chip.window[1])),
                                           round(float(chip.window[2] - chip.window[0])))
            covered |= set(chip.gt_index.tolist())
            assert (t["boxes"] >= 0).all() and (t["boxes"][:, 2:] <= 1000).all()
        assert covered == {0, 2}  # the valid objects (< 80 px) of the finest level
        # the other levels are whole images
        assert [tuple(im.shape[1:]) for im, t in ds if t["chip"].level > 0] == [(800, 1200), (480, 720)]

    def test_mst_is_the_same_dataset_without_ranges(self):
        snip = LevelDataset(_images(), SNIP_LEVELS)
        mst = LevelDataset(_images(), SNIP_LEVELS, ranges=False)
        for (a_im, a), (b_im, b) in zip(snip, mst):
            assert torch.equal(a_im, b_im)
            assert len(b["boxes"]) == 3 and "valid_range" not in b
            assert len(a["boxes"]) + len(a["ignore_boxes"]) == len(b["boxes"]) + len(b["ignore_boxes"])
            assert len(b["ignore_boxes"]) == 1  # the crowd box stays an ignore box in MST
        assert [t["labels"].tolist() for _, t in snip] == [[1, 3], [1, 2, 3], [2]]

    def test_a_warm_start_trains_as_mst_until_its_epoch_then_as_snip(self):
        snip = LevelDataset(_images(), SNIP_LEVELS, chip_sizes=(1000, None, None))
        warm = LevelDataset(_images(), SNIP_LEVELS, chip_sizes=(1000, None, None), ranges_from_epoch=2)
        assert [c.window.tolist() for _, c in warm.items] == [c.window.tolist() for _, c in snip.items]
        mst = LevelDataset(_images(), SNIP_LEVELS, ranges=False)
        mst.items = snip.items  # MST in SNIP's windows: every object an object, no range

        def same(a, b):
            return all(a[1].keys() == b[1].keys() and all(torch.equal(a[1][k], b[1][k]) for k in ("boxes", "labels",
                       "ignore_boxes")) for a, b in zip(a, b))
        for epoch, like in ((0, mst), (1, mst), (2, snip), (5, snip)):
            warm.set_epoch(epoch)
            assert warm.ranges_active == (like is snip)
            assert same(list(warm), list(like)), epoch
        assert all("valid_range" in t for _, t in warm)

    def test_a_warm_start_needs_ranges_and_a_whole_epoch(self):
        with pytest.raises(ValueError, match="ranges_from_epoch needs ranges=True"):
            LevelDataset(_images(), SNIP_LEVELS, ranges=False, ranges_from_epoch=1)
        for bad in (-1, 1.5, True, "2"):
            with pytest.raises(ValueError, match="ranges_from_epoch must be an integer >= 0"):
                LevelDataset(_images(), SNIP_LEVELS, ranges_from_epoch=bad)

    def test_loads_with_its_collate_and_the_default_collate_names_it(self):
        ds = LevelDataset(_images() * 2, SNIP_LEVELS[1:])
        images, targets = next(iter(DataLoader(ds, batch_size=2, collate_fn=LevelDataset.collate_fn)))
        assert len(images) == 2 and targets[0]["boxes"].shape[1] == 4
        with pytest.raises(TypeError, match="collate_fn=ChipDataset.collate_fn"):
            next(iter(DataLoader(ds, batch_size=2)))


class TestChipDataset:
    def test_without_negatives_set_epoch_warns_once(self):
        ds = ChipDataset(_images(), ChipGenerator())
        with pytest.warns(UserWarning, match="no negative chips to resample .no proposals were given"):
            ds.set_epoch(1)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            ds.set_epoch(2)  # once

    def test_default_collate_names_the_collate(self):
        ds = ChipDataset(_images() * 2, ChipGenerator())
        with pytest.raises(TypeError, match="collate_fn=ChipDataset.collate_fn"):
            next(iter(DataLoader(ds, batch_size=2)))

    def test_items_carry_crowd_boxes_and_the_range(self):
        ds = ChipDataset(_images(), ChipGenerator())
        for image, t in ds:
            assert t["chip"].kind == "pos" and "valid_range" in t
        crowd_chip = [t for _, t in ds if len(t["ignore_boxes"]) and t["chip"].level == 2]
        assert crowd_chip  # the crowd box reaches the level-2 chip (the whole image)


def test_the_one_negative_sampler_is_seeded_and_without_replacement():
    a = sample_negatives([10, 3, 0], 4, np.random.default_rng(1))
    b = sample_negatives([10, 3, 0], 4, np.random.default_rng(1))
    assert [x.tolist() for x in a] == [x.tolist() for x in b]
    assert len(set(a[0].tolist())) == 4 and a[1].tolist() == [0, 1, 2] and a[2].size == 0


def test_inside_window_takes_tensors_and_arrays():
    boxes = np.array([[0.0, 0, 10, 10], [5, 5, 30, 30]])
    assert inside_window(boxes, np.array([0.0, 0, 20, 20])).tolist() == [True, False]
    assert inside_window(torch.from_numpy(boxes), torch.tensor([[0.0, 0, 20, 20], [0, 0, 30, 30]])).tolist() == \
        [[True, False], [True, True]]


class TestChecks:
    @pytest.mark.parametrize("kwargs, error, match", [
        (dict(chip_size=float("nan")), ValueError, "chip_size must be a whole number"),
        (dict(chip_size=0), ValueError, "chip_size"),
        (dict(stride=2.5), ValueError, "stride"),
        (dict(neg_chips_per_image=-1), ValueError, "neg_chips_per_image"),
        (dict(chip_size="512"), TypeError, "chip_size must be an integer"),
        (dict(levels=[(1.0, 2.0)]), TypeError, r"levels\[0\] must be a \(ScaleSpec, AreaRange\)"),
    ])
    def test_chip_generator_checks_at_construction(self, kwargs, error, match):
        with pytest.raises(error, match=match):
            ChipGenerator(**kwargs)

    def test_numpy_scalars_are_numbers(self):
        gen = ChipGenerator(chip_size=np.int64(512), stride=np.int32(32), neg_chips_per_image=np.int64(2),
                            neg_min_proposals=np.int64(5))
        assert gen.chip_size == 512 and gen.neg_min_proposals == (5, 5, 5)
        assert AreaRange(np.float32(0), np.float64(80)).valid_mask(torch.tensor([[0.0, 0, 10, 10]])).tolist() == [True]

    def test_crop_chip_refuses_a_zero_chip(self):
        chip = Chip(0, 1.0, torch.tensor([0.0, 0, 10, 10]))
        with pytest.raises(ValueError, match="chip_size must be a positive int"):
            crop_chip(torch.rand(3, 20, 20), {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0)}, chip, 0)

    def test_a_tiny_level_factor_keeps_boxes_in_the_chip(self):
        gen = ChipGenerator(levels=((ScaleSpec.fixed(1e-6), AreaRange()),))
        boxes = torch.tensor([[10.0, 10, 40, 40]])
        (chip,) = gen.positive_chips(boxes, (480, 640))
        _, t = crop_chip(torch.rand(3, 480, 640), {"boxes": boxes, "labels": torch.tensor([1])}, chip, 512,
                         gen.levels)
        assert ((t["boxes"] >= 0) & (t["boxes"] <= 512)).all()
