"""Deformable ResNet stages: the conv5 of Deformable R-FCN, SNIP and SNIPER
(thesis §2.7.1, §3.4)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from scalekit.ops import DeformConv2dPack

__all__ = ["deformable_resnet"]


def _deformable_like(conv: nn.Conv2d, modulated: bool) -> nn.Module:
    layer = DeformConv2dPack(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                                  padding=conv.padding, dilation=conv.dilation, groups=conv.groups,
                                  bias=conv.bias is not None, modulated=modulated)
    layer = layer.to(device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        layer.weight.copy_(conv.weight)
        if conv.bias is not None:
            layer.bias.copy_(conv.bias)
    layer.register_load_state_dict_pre_hook(_keep_offsets_when_absent)
    return layer


def _keep_offsets_when_absent(module, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:
    """A plain ResNet's state dict has no offset predictor: keep the current one
    (zero at initialisation), so that plain checkpoints load with ``strict=True``."""
    if prefix + "weight" not in state_dict:
        return
    for name, tensor in module.offset_conv.state_dict().items():
        state_dict.setdefault(prefix + "offset_conv." + name, tensor.detach().clone())


def deformable_resnet(model: nn.Module, stages: Sequence[str] = ("layer4",), *, modulated: bool = False) -> nn.Module:
    """Swap the 3x3 convolutions of chosen ResNet stages for deformable ones, in place.

    Every 3x3 ``nn.Conv2d`` inside a module named in ``stages`` (``layer1`` ..
    ``layer4`` of a torchvision ResNet, found at any depth, so a detection
    backbone's ``body.layer4`` works too) becomes a deformable convolution with
    its own offset predictor (v1; v2 with ``modulated=True``). The weights are
    copied and the predictors start at zero, so the model computes the same
    function as before (up to float rounding) until it is trained. State dicts
    of the plain model still load, strictly: missing offset predictors keep
    their current values. Default: the last stage, as Deformable R-FCN and
    SNIPER do.

    Args:
        model: a torchvision ResNet, or any module containing its stages.
        stages: names of the stages to make deformable.
        modulated: deformable v2 (learned masks) instead of v1.

    Returns:
        ``model``.

    Example:
        >>> import torch, torchvision
        >>> from scalekit.detection import deformable_resnet
        >>> plain = torchvision.models.resnet18(weights=None).eval()
        >>> deform = deformable_resnet(torchvision.models.resnet18(weights=None)).eval()
        >>> _ = deform.load_state_dict(plain.state_dict())
        >>> x = torch.rand(1, 3, 96, 96)
        >>> torch.allclose(deform(x), plain(x), atol=1e-5)
        True
    """
    if isinstance(stages, str):
        stages = (stages,)
    found = set()
    for name, module in list(model.named_modules()):
        stage = name.rsplit(".", 1)[-1]
        if stage not in stages:
            continue
        found.add(stage)
        for parent in list(module.modules()):
            for child_name, child in list(parent.named_children()):
                if isinstance(child, nn.Conv2d) and child.kernel_size == (3, 3):
                    setattr(parent, child_name, _deformable_like(child, modulated))
    missing = [s for s in stages if s not in found]
    if missing:
        raise ValueError(f"stages {missing} not found in {type(model).__name__} (a torchvision ResNet has "
                         "'layer1' .. 'layer4')")
    return model
