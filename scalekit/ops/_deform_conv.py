"""Deformable convolution v1 (Dai et al., ICCV 2017) and v2 / modulated (Zhu et
al., CVPR 2019): the conv5 layers of Deformable R-FCN, SNIP and SNIPER
(thesis §2.7.1, §3.4)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from scalekit import _ext
from scalekit.ops._checks import check_float, check_int, check_pair, check_tensor, fx_leaf

__all__ = ["deform_conv2d", "DeformConv2d", "DeformConv2dPack"]


# The largest stride, padding and dilation (csrc/deform_conv/driver.h checks the same):
# far beyond any real convolution, small enough that no size computed from them
# overflows int64 (2**31 - 1 did, and torch.nn.Conv2d overflows int32 there).
MAX_CONV_ARGUMENT = 2 ** 16


def _conv_pairs(stride, padding, dilation):
    return (check_pair(stride, "stride", minimum=1, maximum=MAX_CONV_ARGUMENT),
            check_pair(padding, "padding", minimum=0, maximum=MAX_CONV_ARGUMENT),
            check_pair(dilation, "dilation", minimum=1, maximum=MAX_CONV_ARGUMENT))


def _check_output_size(input: Tensor, kernel, stride, padding, dilation) -> None:
    """The output of a convolution of ``input`` [N, C, H, W] is not empty (the kernel's check, in Python)."""
    h, w = input.shape[-2:]
    ho = (h + 2 * padding[0] - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
    wo = (w + 2 * padding[1] - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1
    if ho <= 0 or wo <= 0:
        raise ValueError(f"the output would be empty: input {h}x{w}, kernel {kernel[0]}x{kernel[1]}, "
                         f"padding ({padding[0]}, {padding[1]}), dilation ({dilation[0]}, {dilation[1]})")


@fx_leaf
def deform_conv2d(
    input: Tensor,
    offset: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride=1,
    padding=0,
    dilation=1,
    mask: Tensor | None = None,
) -> Tensor:
    """Deformable 2-D convolution; a drop-in for :func:`torchvision.ops.deform_conv2d`.

    Each kernel tap samples the input at its regular position plus a learned
    offset (bilinear, zero outside the map); with ``mask`` (v2) each sample is
    also scaled by a learned modulation. Weight groups and offset groups are
    inferred from the shapes, as torchvision does.

    Non-finite offsets and masks: a NaN offset, or a NaN or infinite mask value,
    makes its sample NaN (as a dense convolution propagates a NaN input or
    weight), so every output channel at that pixel is NaN, and so are the
    offset and mask gradients of that tap; nothing is read for it. An infinite
    offset moves the sample infinitely far off the map, where it reads the
    zero padding: 0, with zero gradient.

    The CPU backward is deterministic (no atomics); the CUDA backward of the
    input gradient uses atomic adds and raises PyTorch's non-determinism alert.

    Args:
        input: ``[N, C_in, H, W]``; float16/bfloat16/float32/float64 (the CPU
            computes float16 and bfloat16 in float32 and rounds the result).
        offset: ``[N, 2 * offset_groups * kH * kW, H_out, W_out]``; channel
            ``2 * (g * kH * kW + i * kW + j)`` is the y offset of tap ``(i, j)``
            of offset group ``g``, the next one its x offset.
        weight: ``[C_out, C_in / groups, kH, kW]``.
        bias: ``[C_out]`` or ``None``.
        stride, padding, dilation: ints or pairs of ints (Python or numpy; a
            float such as ``1.0`` is a TypeError, as for :func:`torch.nn.functional.conv2d`),
            at most 65536.
        mask: ``[N, offset_groups * kH * kW, H_out, W_out]`` or ``None`` (v1).

    Returns:
        ``[N, C_out, H_out, W_out]``.

    Example:
        >>> import torch
        >>> from scalekit.ops import deform_conv2d
        >>> x = torch.arange(25.0).view(1, 1, 5, 5)
        >>> offset = torch.full((1, 18, 5, 5), 0.5)  # every tap shifted by half a pixel down and right
        >>> deform_conv2d(x, offset, torch.ones(1, 1, 3, 3), padding=1)[0, 0, 0]
        tensor([30.0000, 41.2500, 48.7500, 45.0000, 28.7500])
        >>> mask = torch.full((1, 9, 5, 5), 0.5)
        >>> deform_conv2d(x, offset, torch.ones(1, 1, 3, 3), padding=1, mask=mask)[0, 0, 0]
        tensor([15.0000, 20.6250, 24.3750, 22.5000, 14.3750])
    """
    _ext.assert_has_ops()
    check_float(input, "input")
    check_tensor(offset, "offset")
    check_tensor(weight, "weight")
    if input.dim() != 4 or weight.dim() != 4 or offset.dim() != 4:
        raise ValueError(
            "input [N, C_in, H, W], weight [C_out, C_in / groups, kH, kW] and offset "
            f"[N, 2 * offset_groups * kH * kW, H_out, W_out] must be 4-D, got {list(input.shape)}, "
            f"{list(weight.shape)} and {list(offset.shape)}"
        )
    (sh, sw), (ph, pw), (dh, dw) = _conv_pairs(stride, padding, dilation)
    kh, kw = weight.shape[-2:]
    if weight.shape[1] == 0 or input.shape[1] % weight.shape[1] != 0:
        raise ValueError(f"input channels ({input.shape[1]}) must be a multiple of weight.shape[1] "
                         f"({weight.shape[1]} = C_in / groups)")
    groups = input.shape[1] // weight.shape[1]
    if offset.shape[1] % (2 * kh * kw) != 0 or offset.shape[1] == 0:
        raise ValueError(f"offset channels ({offset.shape[1]}) must be a positive multiple of 2 * kH * kW = {2 * kh * kw}")
    offset_groups = offset.shape[1] // (2 * kh * kw)
    if not torch.is_autocast_enabled(input.device.type):  # under autocast the dispatcher casts them first
        for name, t in (("weight", weight), ("offset", offset), ("mask", mask), ("bias", bias)):
            if t is not None and t.dtype != input.dtype:
                raise TypeError(f"{name} must have the dtype of input ({input.dtype}), got {t.dtype}")
    return torch.ops.scalekit.deform_conv2d(input, weight, offset, mask, bias, sh, sw, ph, pw, dh, dw,
                                            groups, offset_groups)


class DeformConv2d(nn.Module):
    """:func:`deform_conv2d` as a layer; a drop-in for :class:`torchvision.ops.DeformConv2d`.

    Same constructor, parameters (``weight``, ``bias``), initialisation and
    ``forward(input, offset, mask=None)`` as torchvision's, so state dicts load
    both ways. The offsets (and masks) come from the caller; for the layer
    that predicts its own, see :class:`DeformConv2dPack`.

    Example:
        >>> import torch
        >>> from scalekit.ops import DeformConv2d
        >>> layer = DeformConv2d(4, 8, kernel_size=3, padding=1)
        >>> x = torch.randn(2, 4, 10, 10)
        >>> offset = torch.zeros(2, 2 * 3 * 3, 10, 10)  # no shift: a plain convolution
        >>> torch.allclose(layer(x, offset), torch.nn.functional.conv2d(x, layer.weight, layer.bias, padding=1), atol=1e-5)
        True
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True) -> None:
        super().__init__()
        in_channels = check_int(in_channels, "in_channels", minimum=1)
        out_channels = check_int(out_channels, "out_channels", minimum=1)
        groups = check_int(groups, "groups", minimum=1)
        if in_channels % groups != 0:
            raise ValueError(f"in_channels ({in_channels}) must be divisible by groups ({groups})")
        if out_channels % groups != 0:
            raise ValueError(f"out_channels ({out_channels}) must be divisible by groups ({groups})")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = check_pair(kernel_size, "kernel_size", minimum=1)
        self.stride, self.padding, self.dilation = _conv_pairs(stride, padding, dilation)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *self.kernel_size))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_channels))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch.nn.Conv2d's initialisation (as torchvision's DeformConv2d)."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight.shape[1] * self.weight.shape[2] * self.weight.shape[3]
            bound = 1 / math.sqrt(fan_in)
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, input: Tensor, offset: Tensor, mask: Tensor | None = None) -> Tensor:
        return deform_conv2d(input, offset, self.weight, self.bias, stride=self.stride, padding=self.padding,
                             dilation=self.dilation, mask=mask)

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
             f"padding={self.padding}, dilation={self.dilation}")
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s


class DeformConv2dPack(DeformConv2d):
    """Deformable convolution with its own offset (and mask) predictor; ``forward(input)``.

    A plain ``kernel_size`` convolution on the input, ``offset_conv``, predicts
    the offsets (``2 * offset_groups * kH * kW`` channels) and, with
    ``modulated=True``, the masks (``offset_groups * kH * kW`` channels,
    through ``2 * sigmoid``). Both predictors start at zero, so a fresh layer
    computes exactly the plain convolution with its weight (DCNv2's own code
    uses ``sigmoid``, which starts at half the signal; ``2 * sigmoid`` starts at
    1 and still lets a sample be switched off). The name is mmcv's. Its state
    dict is :class:`DeformConv2d`'s plus ``offset_conv.*``.

    Example:
        >>> import torch
        >>> from scalekit.ops import DeformConv2dPack
        >>> layer = DeformConv2dPack(16, 32, kernel_size=3, padding=1, modulated=True)
        >>> x = torch.randn(2, 16, 10, 10)
        >>> torch.allclose(layer(x), torch.nn.functional.conv2d(x, layer.weight, layer.bias, padding=1), atol=1e-5)
        True
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, *, offset_groups: int = 1, modulated: bool = False) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias)
        offset_groups = check_int(offset_groups, "offset_groups", minimum=1)
        if in_channels % offset_groups != 0:
            raise ValueError(f"offset_groups ({offset_groups}) must be positive and divide in_channels ({in_channels})")
        self.offset_groups, self.modulated = offset_groups, modulated
        kh, kw = self.kernel_size
        predicted = offset_groups * kh * kw * (3 if modulated else 2)
        self.offset_conv = nn.Conv2d(in_channels, predicted, self.kernel_size, self.stride, self.padding, self.dilation)
        nn.init.zeros_(self.offset_conv.weight)
        nn.init.zeros_(self.offset_conv.bias)

    def forward(self, input: Tensor) -> Tensor:
        # Checked before offset_conv, whose errors would not name the argument.
        check_float(input, "input")
        if input.dim() != 4 or input.shape[2] == 0 or input.shape[3] == 0:
            raise ValueError(f"input must have shape [N, C_in, H, W] with H, W > 0 (the offset predictor is a "
                             f"torch.nn.Conv2d), got {list(input.shape)}")
        _check_output_size(input, self.kernel_size, self.stride, self.padding, self.dilation)
        predicted = self.offset_conv(input)
        n_off = 2 * self.offset_groups * self.kernel_size[0] * self.kernel_size[1]
        offset, mask = predicted[:, :n_off], None
        if self.modulated:
            mask = 2 * torch.sigmoid(predicted[:, n_off:])
        return super().forward(input, offset, mask)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", offset_groups={self.offset_groups}, modulated={self.modulated}"
