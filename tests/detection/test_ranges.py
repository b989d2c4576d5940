"""Per-scale label assignment (thesis §2.6.1, §3.3.4): proposals whose own size
lies outside the scale's valid range are neither foreground nor background,
through a real torchvision FasterRCNN and through a scalekit head's assignment."""

import math

import pytest
import torch
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator

from scalekit.chips import Chip, chip_targets
from scalekit.detection import honour_ignore_boxes
from scalekit.heads._common import IGNORE, assign
from scalekit.scale import SNIP_LEVELS


def _tiny_faster_rcnn(**kwargs):
    torch.manual_seed(0)
    backbone = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, stride=8, padding=1), torch.nn.ReLU())
    backbone.out_channels = 16
    return FasterRCNN(backbone, num_classes=3, min_size=512, max_size=512, box_batch_size_per_image=100_000,
                      rpn_anchor_generator=AnchorGenerator(((16, 32, 64),), ((0.5, 1.0, 2.0),)), **kwargs)


def _finest_chip_target():
    """A 512 px window at SNIP's finest level (range [0, 80) original px): a small object in it."""
    spec, area = SNIP_LEVELS[0]
    f = spec.factor(480, 640)  # 2.92x
    chip = Chip(0, f, torch.tensor([0.0, 0, 512 / f, 512 / f]))
    target = {"boxes": torch.tensor([[10.0, 10, 30, 30]]), "labels": torch.tensor([1])}
    return chip_targets(chip, target, area), f


SMALL_FG = [26.0, 26, 90, 90]       # IoU 0.83 with the object (29..88 in chip px): foreground
SMALL_BG = [300.0, 300, 340, 340]   # 40 px, in range, no object: background
LARGE_BG = [10.0, 150, 500, 500]    # 350 px in chip px = 120 original px, out of [0, 80): ignored


def _sampled(model, target):
    proposals = [torch.tensor([SMALL_FG, SMALL_BG, LARGE_BG])]
    p, _, labels, _ = model.roi_heads.select_training_samples(proposals, [target])
    return {tuple(b.tolist()): int(lab) for b, lab in zip(p[0], labels[0])}


class TestTorchvision:
    def test_a_large_background_proposal_at_the_finest_scale_is_not_a_sample(self):
        t, f = _finest_chip_target()
        assert t["valid_range"].tolist() == pytest.approx([0.0, 80 * f])
        model = honour_ignore_boxes(_tiny_faster_rcnn())
        sampled = _sampled(model, {k: t[k] for k in ("boxes", "labels", "ignore_boxes", "valid_range")})
        assert sampled[tuple(SMALL_FG)] == 1 and sampled[tuple(SMALL_BG)] == 0
        assert tuple(LARGE_BG) not in sampled  # neither foreground nor background
        # the ground-truth rule (the option): the same proposal trains as background
        old = honour_ignore_boxes(_tiny_faster_rcnn(), ignore_rule="gt")
        assert _sampled(old, {k: t[k] for k in ("boxes", "labels", "ignore_boxes", "valid_range")})[tuple(LARGE_BG)] == 0
        # no valid_range: every size is valid
        assert _sampled(model, {k: t[k] for k in ("boxes", "labels", "ignore_boxes")})[tuple(LARGE_BG)] == 0

    def test_appended_ground_truth_out_of_range_is_not_a_sample(self):
        model = honour_ignore_boxes(_tiny_faster_rcnn())
        target = {"boxes": torch.tensor([[0.0, 0, 400, 400], [10, 10, 30, 30]]), "labels": torch.tensor([1, 2]),
                  "valid_range": torch.tensor([0.0, 100.0])}
        p, _, labels, _ = model.roi_heads.select_training_samples([torch.zeros(0, 4)], [target])
        assert p[0].tolist() == [[10.0, 10, 30, 30]] and labels[0].tolist() == [2]

    def test_the_transform_resizes_the_range_with_the_image(self):
        model = honour_ignore_boxes(_tiny_faster_rcnn())  # resizes 256 -> 512
        target = {"boxes": torch.tensor([[10.0, 10, 30, 30]]), "labels": torch.tensor([1]),
                  "valid_range": torch.tensor([10.0, 80.0])}
        _, targets = model.transform([torch.rand(3, 256, 256)], [target])
        assert targets[0]["valid_range"].tolist() == [20.0, 160.0]

    def test_a_full_training_step_runs_and_bad_ranges_are_clear(self):
        model = honour_ignore_boxes(_tiny_faster_rcnn()).train()
        t, _ = _finest_chip_target()
        losses = model([torch.rand(3, 512, 512)], [{k: t[k] for k in ("boxes", "labels", "ignore_boxes", "valid_range")}])
        assert torch.isfinite(sum(losses.values()))
        bad = {k: t[k] for k in ("boxes", "labels")} | {"valid_range": torch.tensor([80.0, 10.0])}
        with pytest.raises(ValueError, match=r"valid_range'\] must satisfy 0 <= lo < hi"):
            model([torch.rand(3, 512, 512)], [bad])
        with pytest.raises(ValueError, match="ignore_rule"):
            honour_ignore_boxes(_tiny_faster_rcnn(), ignore_rule="proposals")


class TestScalekitAssign:
    def test_a_large_background_proposal_at_the_finest_scale_is_ignored(self):
        t, _ = _finest_chip_target()
        proposals = [torch.tensor([SMALL_FG, SMALL_BG, LARGE_BG])]
        labels, _ = assign(proposals, [t], inclusive=True)
        assert labels.tolist() == [1, 0, IGNORE]
        labels, _ = assign(proposals, [t], inclusive=True, ignore_rule="gt")
        assert labels.tolist() == [1, 0, 0]  # the ground-truth rule: background

    def test_in_range_proposals_on_ignore_boxes_are_ignored_under_both_rules(self):
        target = {"boxes": torch.tensor([[0.0, 0, 20, 20]]), "labels": torch.tensor([2]),
                  "ignore_boxes": torch.tensor([[100.0, 100, 140, 140]]), "valid_range": torch.tensor([0.0, math.inf])}
        proposals = [torch.tensor([[101.0, 101, 140, 140], [0, 0, 20, 20]])]
        for rule in ("proposal", "gt"):
            assert assign(proposals, [target], inclusive=True, ignore_rule=rule)[0].tolist() == [IGNORE, 2]
