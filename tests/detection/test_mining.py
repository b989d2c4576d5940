"""SNIPER's negative-chip mining: the RPN-only run and the proposals it mines,
checked against torchvision's own RPN on the resized images."""

import os

import pytest
import torch
import torch.distributed as dist
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator

from scalekit.chips import ChipDataset, ChipGenerator
from scalekit.detection import RPNOnly, keep_input_size, mine_proposals
from scalekit.scale import AreaRange, ScaleSpec, resize_image

LEVELS = ((ScaleSpec.fixed(2.0), AreaRange(0, 40)), (ScaleSpec.fit_longer(128), AreaRange(30)))


def _detector(**kwargs):
    torch.manual_seed(0)
    backbone = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, stride=8, padding=1), torch.nn.ReLU())
    backbone.out_channels = 16
    kwargs.setdefault("rpn_post_nms_top_n_test", 10)
    return FasterRCNN(backbone, num_classes=3, min_size=96, max_size=96,
                      rpn_anchor_generator=AnchorGenerator(((8, 16, 32),), ((0.5, 1.0, 2.0),)), **kwargs)


def _data(n=2):
    g = torch.Generator().manual_seed(1)
    return [(torch.rand(3, 90, 120, generator=g), {"boxes": torch.tensor([[10.0, 10, 30, 30], [40, 30, 100, 80]]),
                                                   "labels": torch.tensor([1, 2])}) for _ in range(n)]


def test_proposals_are_the_rpn_s_on_each_level_in_original_pixels():
    model = _detector()
    proposals = mine_proposals(model, _data(1), LEVELS, per_level=25)
    image = _data(1)[0][0]
    keep_input_size(model).eval()
    model.rpn._post_nms_top_n["testing"] = 25  # the reference, by hand
    expected = []
    with torch.no_grad():
        for spec, _ in LEVELS:
            resized, fy, fx = resize_image(image, spec.factor(90, 120))
            images, _ = model.transform([resized])
            boxes, _ = model.rpn(images, {"0": model.backbone(images.tensors)})
            expected.append(boxes[0] / torch.tensor([fx, fy, fx, fy]))
    torch.testing.assert_close(proposals[0], torch.cat(expected))
    assert len(proposals[0]) > 2 * 10  # more than the model's own 10 per level: per_level applied


def test_the_model_is_left_as_it_was():
    model = _detector().train()
    before = dict(model.rpn._post_nms_top_n)
    mine_proposals(model, _data(1), LEVELS, per_level=7)
    assert model.training and model.rpn._post_nms_top_n == before
    assert model.transform.resize_inputs  # mined at each level's own size, resizing restored
    with pytest.raises(ValueError, match="per_level must be a positive int"):
        mine_proposals(model, _data(1), LEVELS, per_level=0)
    with pytest.raises(TypeError, match="GeneralizedRCNN"):
        mine_proposals(torch.nn.Linear(2, 2), _data(1), LEVELS)


def test_rpn_only_trains_the_rpn_and_backbone_not_the_heads():
    model = _detector()
    rpn = RPNOnly(model).train()
    images = [im for im, _ in _data()]
    targets = [t for _, t in _data()]
    losses = rpn(images, targets)
    assert set(losses) == {"loss_objectness", "loss_rpn_box_reg"}
    sum(losses.values()).backward()
    assert model.backbone[0].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.roi_heads.parameters())
    with pytest.raises(RuntimeError, match="call .train"):
        rpn.eval()(images, targets)


def test_rpn_only_runs_under_ddp_and_mines_through_it(tmp_path):
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29533")
    dist.init_process_group("gloo", rank=0, world_size=1, init_method=f"file://{tmp_path}/rendezvous")
    try:
        model = _detector()
        ddp = torch.nn.parallel.DistributedDataParallel(RPNOnly(model), find_unused_parameters=True)
        losses = ddp([im for im, _ in _data()], [t for _, t in _data()])
        sum(losses.values()).backward()
        assert model.rpn.head.conv[0][0].weight.grad is not None
        assert len(mine_proposals(ddp, _data(1), LEVELS, per_level=5)[0]) <= 10
    finally:
        dist.destroy_process_group()


def test_mined_proposals_give_negative_chips():
    data = _data()
    proposals = mine_proposals(_detector(), data, LEVELS, per_level=50)
    chips = ChipDataset(data, ChipGenerator(chip_size=80, stride=16, levels=LEVELS, neg_min_proposals=1),
                        proposals=proposals)
    assert any(c.kind == "neg" for _, c in chips.items)
