"""AutoFocus's focus head inside a torchvision detector: the loss it adds, the
cells that learn nothing, the maps it returns, and AutoFocus running it."""

import math

import pytest
import torch
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator

from scalekit.autofocus import AutoFocus, focus_labels, focus_loss
from scalekit.detection import FocusDetector, keep_input_size
from scalekit.scale import AreaRange, ScaleSpec


def _backbone(stride=16, channels=8):
    torch.manual_seed(0)
    backbone = torch.nn.Sequential(torch.nn.Conv2d(3, channels, 3, stride=stride, padding=1), torch.nn.ReLU())
    backbone.out_channels = channels
    return backbone


def _model(stride=16, **kwargs):
    detector = FasterRCNN(_backbone(stride), num_classes=3, min_size=256, max_size=256,
                          rpn_anchor_generator=AnchorGenerator(((16, 32, 64),), ((1.0,),)))
    torch.manual_seed(1)
    return FocusDetector(detector, mid_channels=16, **kwargs)


def _capture_logits(model):
    out = []

    def hook(module, inputs, output):
        output.retain_grad()
        out.append((inputs[0], output))

    model.focus_head.register_forward_hook(hook)
    return out


# at a 256-px input the thresholds are 2.5 / 32 / 45 px: 24 px is small, 100 px large, 2 px tiny
TARGET = {"boxes": torch.tensor([[16.0, 16, 40, 40], [150, 150, 250, 250]]), "labels": torch.tensor([1, 2]),
          "ignore_boxes": torch.tensor([[100.0, 20, 102, 22]])}


def test_loss_dict_gains_the_focus_loss_against_focus_labels():
    model = _model()
    keep_input_size(model.model)
    captured = _capture_logits(model)
    losses = model([torch.rand(3, 256, 256)], [dict(TARGET)])
    assert sorted(losses) == ['loss_box_reg', 'loss_classifier', 'loss_focus', 'loss_objectness', 'loss_rpn_box_reg']
    features, logits = captured[0]
    labels = focus_labels(torch.cat([TARGET["boxes"], TARGET["ignore_boxes"]]), (256, 256))
    assert int(labels[1, 1]) == 1 and int(labels[1, 6]) == -1 and int(labels[12, 12]) == 0  # small, tiny, large
    assert torch.allclose(losses["loss_focus"], focus_loss(logits, labels[None]))
    assert features.shape[-2:] == (16, 16)  # the stride-16 map of the 256 x 256 input


def test_ignored_cells_get_zero_gradient_and_the_others_do_not():
    model = _model()
    keep_input_size(model.model)
    captured = _capture_logits(model)
    model([torch.rand(3, 256, 256)], [dict(TARGET)])["loss_focus"].backward()
    _, logits = captured[0]
    labels = focus_labels(torch.cat([TARGET["boxes"], TARGET["ignore_boxes"]]), (256, 256))
    grad = logits.grad[0].abs().sum(0)
    assert bool((grad[labels == -1] == 0).all())
    assert bool((grad[labels != -1] > 0).all())
    assert model.focus_head.conv.weight.grad.abs().sum() > 0


def test_labels_follow_the_resize_and_the_loss_weight():
    # torchvision resizes the 128 x 128 image to 256: boxes and ignore boxes double, labels are made at 256
    half = {"boxes": TARGET["boxes"] / 2, "labels": TARGET["labels"], "ignore_boxes": TARGET["ignore_boxes"] / 2}
    expected = focus_labels(torch.cat([TARGET["boxes"], TARGET["ignore_boxes"]]), (256, 256))
    image = torch.rand(3, 128, 128)
    for weight in (1.0, 0.5):
        model = _model(focus_loss_weight=weight)
        captured = _capture_logits(model)
        losses = model([image], [dict(half)])
        _, logits = captured[0]
        assert logits.shape[-2:] == (16, 16)
        assert torch.allclose(losses["loss_focus"], weight * focus_loss(logits, expected[None]))


def test_focus_map_has_the_feature_map_s_shape_and_stride_at_inference():
    model = _model().eval()
    keep_input_size(model.model)
    captured = _capture_logits(model)
    out = model([torch.rand(3, 200, 300), torch.rand(3, 100, 90)])
    features, logits = captured[0]
    assert tuple(features.shape[-2:]) == (14, 20)  # both padded to 224 x 320, stride 16
    assert tuple(out[0]["focus"].shape) == (math.ceil(200 / 16), math.ceil(300 / 16))
    assert tuple(out[1]["focus"].shape) == (math.ceil(100 / 16), math.ceil(90 / 16))
    assert torch.allclose(out[1]["focus"], logits.softmax(1)[1, 1, :7, :6])
    assert set(out[0]) == {"boxes", "scores", "labels", "focus"}


def test_a_map_at_another_stride_is_refused_or_found():
    with pytest.raises(ValueError, match="stride 16"):
        _model(stride=8).eval()([torch.rand(3, 64, 64)])
    fpn_like = FocusDetector(FasterRCNN(_backbone(8), num_classes=3, min_size=64, max_size=64,
                                        rpn_anchor_generator=AnchorGenerator(((16,),), ((1.0,),))),
                             stride=8, mid_channels=4).eval()
    assert tuple(fpn_like([torch.rand(3, 64, 64)])[0]["focus"].shape) == (8, 8)
    with pytest.raises(ValueError, match="feature 'p3'"):
        FocusDetector(fpn_like.model, feature="p3", stride=8).eval()([torch.rand(3, 64, 64)])
    with pytest.raises(TypeError, match="GeneralizedRCNN"):
        FocusDetector(torch.nn.Conv2d(1, 1, 1))
    with pytest.raises(ValueError, match=r"targets\[0\]\['boxes'\]"):
        _model()([torch.rand(3, 64, 64)], [{"boxes": torch.zeros(3), "labels": torch.zeros(3, dtype=torch.int64)}])
    with pytest.raises(ValueError, match="targets must hold one dict per image"):
        _model()([torch.rand(3, 64, 64)], [])


def test_autofocus_runs_a_focus_detector_on_the_crops_at_their_own_size():
    model = _model().eval()
    sizes = []
    model.model.backbone.register_forward_pre_hook(lambda m, x: sizes.append(tuple(x[0].shape)))
    with torch.no_grad():  # make the head see focus everywhere: one chip, the whole image
        model.focus_head.logits.bias.copy_(torch.tensor([-10.0, 10.0]))
    levels = ((ScaleSpec.fixed(0.5), AreaRange(40, math.inf)), (ScaleSpec.fixed(1.0), AreaRange(0, 40)))
    out = AutoFocus(levels, thresholds=(0.5,), dilations=(1,), min_chips=(2,)).detect(model, torch.rand(3, 160, 192))
    assert sizes == [(1, 3, 96, 96), (1, 3, 160, 192)]  # 80 x 96 padded to 96; then the one chip, 160 x 192
    assert out["chips"][1].tolist() == [[0.0, 0.0, 192.0, 160.0]] and out["pixel_fraction"] == [1.0, 1.0]
    assert not model.training
    with pytest.raises(ValueError, match="stride"):
        AutoFocus(levels, thresholds=(0.5,), dilations=(1,), min_chips=(2,), stride=8).detect(model,
                                                                                        torch.rand(3, 64, 64))


def test_cells_of_the_padding_are_negatives():
    model = _model()
    keep_input_size(model.model)
    captured = _capture_logits(model)
    losses = model([torch.rand(3, 200, 200)], [dict(TARGET)])  # padded to 224: 14 x 14 cells, 13 x 13 of image
    _, logits = captured[0]
    labels = torch.zeros(14, 14, dtype=torch.int64)
    labels[:13, :13] = focus_labels(torch.cat([TARGET["boxes"], TARGET["ignore_boxes"]]), (200, 200))
    assert torch.allclose(losses["loss_focus"], focus_loss(logits, labels[None]))
    losses["loss_focus"].backward()  # they learn: their gradient is not zero (an ignored cell's would be)
    grad = logits.grad[0].abs().sum(0)
    assert bool((grad[13, :] > 0).all()) and bool((grad[:, 13] > 0).all())
