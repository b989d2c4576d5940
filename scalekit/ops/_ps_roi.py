"""Position-sensitive RoI pooling: R-FCN's PSRoIPool and PSRoIAlign (Dai, Li, He
and Sun, NeurIPS 2016) and Deformable R-FCN's deformable PSRoI pooling (Dai et
al., ICCV 2017), the heads of SNIP (thesis §2.7.1) and R-FCN-3000 (§4.4.3).

``input`` has ``C * ph * pw`` channels; output channel ``c`` of bin ``(i, j)``
reads input channel ``(c * ph + i) * pw + j`` (torchvision's layout), so each
bin position has its own score maps.

Box coordinates stay in float32 whatever the feature dtype: with float16 or
bfloat16 features the ops compute in float32 and return the feature dtype
(bfloat16 would move the box ``(1001, 1003, 1901, 1907)`` to
``(1000, 1004, 1904, 1904)``). torchvision instead casts the boxes to the
feature dtype. The same holds under :func:`torch.autocast`, whose kernels for
these ops run in float32 and return the dtype of ``input``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from scalekit import _ext
from scalekit.ops._checks import check_float, check_int, check_number, check_pair, check_tensor, fx_leaf

__all__ = [
    "ps_roi_pool", "ps_roi_align", "deform_ps_roi_pool", "PSRoIPool", "PSRoIAlign", "DeformPSRoIPool",
    "DeformPSRoIPoolPack",
]

BoxesLike = Tensor | Sequence[Tensor]

# The largest ``sampling_ratio`` of :func:`ps_roi_align` and ``sample_per_part``
# of :func:`deform_ps_roi_pool`: samples per bin side, up to 2**20 per bin. The
# work is linear in it; beyond the resolution of any feature map, more samples
# only slow a call down (``2**31`` took about ten minutes). The kernels check
# the same bound (``kMaxSamplesPerSide`` in ``csrc/ps_roi/geometry.h``).
MAX_SAMPLES_PER_SIDE = 1024


def _pair(value, name: str) -> tuple[int, int]:
    return check_pair(value, name, minimum=1)


def _work_dtype(input: Tensor) -> torch.dtype:
    """float32 for reduced-precision features (boxes stay float32), else the feature dtype."""
    return torch.float32 if input.dtype in (torch.float16, torch.bfloat16) else input.dtype


def _rois(input: Tensor, boxes: BoxesLike) -> Tensor:
    """``[K, 5]`` RoIs (batch index first), in :func:`_work_dtype`, from a ``[K, 5]`` tensor or a list of ``[L, 4]``."""
    dtype = _work_dtype(input)
    if isinstance(boxes, (list, tuple)):
        for i, b in enumerate(boxes):
            check_tensor(b, f"boxes[{i}]")
            if b.dim() != 2 or b.shape[1] != 4:
                raise ValueError(f"boxes[{i}] must have shape [L, 4], got {list(b.shape)}")
        if len(boxes) == 0:
            return input.new_zeros((0, 5), dtype=dtype)
        cat = torch.cat([b.to(dtype) for b in boxes])
        idx = torch.cat([torch.full_like(b[:, :1], i, dtype=dtype) for i, b in enumerate(boxes)])
        boxes = torch.cat([idx.to(cat.device), cat], dim=1)
    check_tensor(boxes, "boxes")
    if boxes.dim() != 2 or boxes.shape[1] != 5:
        raise ValueError(
            "boxes must be a [K, 5] tensor (batch index, x1, y1, x2, y2) or a list of [L, 4] tensors, "
            f"got shape {list(boxes.shape)}"
        )
    if boxes.device != input.device:
        raise ValueError(f"boxes must be on the device of input ({input.device}), got {boxes.device}")
    return boxes.to(dtype)


def _spatial_scale(spatial_scale) -> float:
    return check_number(spatial_scale, "spatial_scale", minimum=0.0, strict=True, allow_inf=False)


def _sampling_ratio(sampling_ratio) -> int:
    ratio = check_int(sampling_ratio, "sampling_ratio")
    if ratio > MAX_SAMPLES_PER_SIDE:
        raise ValueError(f"sampling_ratio must be <= {MAX_SAMPLES_PER_SIDE} (samples per bin side; <= 0 for "
                         f"adaptive), got {ratio}")
    return ratio


def _deform_args(spatial_scale, sample_per_part, trans_std) -> tuple[float, int, float]:
    scale = _spatial_scale(spatial_scale)
    spp = check_int(sample_per_part, "sample_per_part")
    if not 1 <= spp <= MAX_SAMPLES_PER_SIDE:
        raise ValueError(f"sample_per_part must be in [1, {MAX_SAMPLES_PER_SIDE}] (samples per bin side), got {spp}")
    return scale, spp, check_number(trans_std, "trans_std", allow_inf=False)


def _check_input(input: Tensor, groups: tuple[int, int]) -> None:
    _ext.assert_has_ops()
    check_float(input, "input")
    if input.dim() != 4:
        raise ValueError(f"input must have shape [N, C, H, W], got {list(input.shape)}")
    if input.shape[1] % (groups[0] * groups[1]) != 0:
        raise ValueError(
            f"input channels ({input.shape[1]}) must be divisible by {groups[0]} * {groups[1]} "
            "(one channel per bin position and output channel)"
        )


@fx_leaf
def ps_roi_pool(input: Tensor, boxes: BoxesLike, output_size, spatial_scale: float = 1.0) -> Tensor:
    """Position-sensitive RoI max-free (average) pooling; a drop-in for :func:`torchvision.ops.ps_roi_pool`.

    Each RoI is rounded to the feature grid (C++ rounding, .5 away from zero),
    split into ``ph x pw`` bins of whole pixels, and bin ``(i, j)`` of output
    channel ``c`` averages input channel ``(c * ph + i) * pw + j`` over the
    pixels the bin covers. Unlike torchvision, which stops bins one pixel short
    of the last row and column in the forward pass (but not in the backward),
    every covered pixel is pooled, forward and backward alike. Backward is
    deterministic on the CPU; on CUDA it uses atomic adds (PyTorch's
    non-determinism alert is raised).

    Args:
        input: ``[N, C * ph * pw, H, W]`` feature map, float16/bfloat16/float32/float64.
        boxes: ``[K, 5]`` RoIs ``(batch index, x1, y1, x2, y2)`` in image
            coordinates, or a list of ``N`` tensors ``[L, 4]``.
        output_size: ``ph`` or ``(ph, pw)``.
        spatial_scale: feature-map size / image size (e.g. 1/16).

    Returns:
        ``[K, C, ph, pw]``.

    Example:
        >>> import torch
        >>> from scalekit.ops import ps_roi_pool
        >>> x = torch.arange(25.0).reshape(1, 1, 5, 5)
        >>> ps_roi_pool(x, torch.tensor([[0.0, 0, 0, 5, 5]]), output_size=1)  # the whole map
        tensor([[[[12.]]]])
    """
    ph, pw = _pair(output_size, "output_size")
    _check_input(input, (ph, pw))
    rois = _rois(input, boxes)
    scale = _spatial_scale(spatial_scale)
    return torch.ops.scalekit.ps_roi_pool(input.to(rois.dtype), rois, scale, ph, pw).to(input.dtype)


@fx_leaf
def ps_roi_align(
    input: Tensor,
    boxes: BoxesLike,
    output_size,
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = True,
) -> Tensor:
    """Position-sensitive RoI Align; a drop-in for :func:`torchvision.ops.ps_roi_align`.

    Bin ``(i, j)`` of output channel ``c`` averages bilinear samples of input
    channel ``(c * ph + i) * pw + j`` on a regular grid of ``sampling_ratio``
    samples per bin side (``-1``: ``ceil(bin size)``), as RoIAlign does.

    ``aligned=True`` (default) shifts boxes by half a pixel, the convention of
    ``roi_align(aligned=True)``; torchvision's ``ps_roi_align``, which has no
    flag, always does this, so the default equals it. ``aligned=False`` is
    ``roi_align(aligned=False)``'s legacy convention: no shift, and RoIs of at
    least 1x1. Zero-size boxes pool to 0 (torchvision's ``ps_roi_align`` gives
    NaN, ``roi_align`` gives 0). Backward is deterministic on the CPU; on CUDA
    it uses atomic adds (PyTorch's non-determinism alert is raised).

    Args:
        input: ``[N, C * ph * pw, H, W]`` feature map, float16/bfloat16/float32/float64.
        boxes: ``[K, 5]`` RoIs ``(batch index, x1, y1, x2, y2)`` or a list of ``[L, 4]``.
        output_size: ``ph`` or ``(ph, pw)``.
        spatial_scale: feature-map size / image size.
        sampling_ratio: samples per bin side, at most 1024 (a bound on the work:
            more only slows the call); ``<= 0`` for adaptive.
        aligned: half-pixel box shift, see above.

    Returns:
        ``[K, C, ph, pw]``.

    Example:
        >>> import torch
        >>> from scalekit.ops import ps_roi_align
        >>> x = torch.arange(25.0).reshape(1, 1, 5, 5)
        >>> ps_roi_align(x, torch.tensor([[0.0, 0, 0, 4, 4]]), 1, sampling_ratio=1)  # samples (1.5, 1.5)
        tensor([[[[9.]]]])
        >>> ps_roi_align(x, torch.tensor([[0.0, 0, 0, 4, 4]]), 1, sampling_ratio=1, aligned=False)  # (2, 2)
        tensor([[[[12.]]]])
    """
    ph, pw = _pair(output_size, "output_size")
    _check_input(input, (ph, pw))
    rois = _rois(input, boxes)
    scale = _spatial_scale(spatial_scale)
    sampling_ratio = _sampling_ratio(sampling_ratio)
    return torch.ops.scalekit.ps_roi_align(
        input.to(rois.dtype), rois, scale, ph, pw, sampling_ratio, bool(aligned)
    ).to(input.dtype)


@fx_leaf
def deform_ps_roi_pool(
    input: Tensor,
    boxes: BoxesLike,
    offset: Tensor | None,
    output_size,
    spatial_scale: float = 1.0,
    group_size=None,
    part_size=None,
    sample_per_part: int = 4,
    trans_std: float = 0.1,
) -> Tensor:
    """Deformable position-sensitive RoI pooling (Deformable R-FCN, Dai et al. 2017).

    Where the samples lie, for RoI ``(x1, y1, x2, y2)`` and ``s = spatial_scale``:

    * the RoI on the feature map starts at ``(x1 * s - 0.5, y1 * s - 0.5)`` and
      ends at ``(x2 * s - 0.5, y2 * s - 0.5)`` (pixel centres at integers, as
      ``ps_roi_align(aligned=True)``); its size is at least 0.1 x 0.1;
    * it is split into ``ph x pw`` bins; bin ``(i, j)`` belongs to offset cell
      ``(i * part_h // ph, j * part_w // pw)`` and to channel group
      ``(i * group_h // ph, j * group_w // pw)``;
    * the bin is shifted by ``offset[k, :, cell] * trans_std * (RoI width, RoI height)``
      (``offset[k, 0]`` is x, ``offset[k, 1]`` is y);
    * it averages ``sample_per_part x sample_per_part`` bilinear samples at the
      centres of its sub-bins, of input channel ``(c * group_h + gi) * group_w + gj``;
      a sample more than half a pixel outside the map is skipped (not counted),
      one within half a pixel is clamped onto the map.

    Conventions kept from the original code: ``trans_std`` x RoI size offset
    scaling, the 0.1 minimum RoI size, the half-pixel skip rule, averaging over
    the samples that count, and no gradient to the boxes. Changed: boxes are not
    rounded to whole pixels and the end is not extended by one pixel (scalekit's
    continuous coordinates), and samples sit at sub-bin centres instead of
    their top-left corners. With ``offset=None`` (or zeros) and ``group_size`` =
    ``output_size``, a box at least 0.1 feature pixels wide and high whose
    samples stay on the map pools exactly as
    ``ps_roi_align(aligned=True, sampling_ratio=sample_per_part)``.

    A NaN offset makes the bins of its cell NaN (and their offset gradient), as
    a NaN input would; nothing is read for them. An infinite offset moves the
    bins off the map: they sample nothing and are 0, as any bin off the map.
    With ``trans_std=0`` offsets are ignored, except that NaN stays NaN.

    Gradients flow to ``input`` and ``offset``. Backward is deterministic on the
    CPU; on CUDA it uses atomic adds (PyTorch's non-determinism alert is raised).

    Args:
        input: ``[N, C * group_h * group_w, H, W]``.
        boxes: ``[K, 5]`` RoIs ``(batch index, x1, y1, x2, y2)`` or a list of ``[L, 4]``.
        offset: ``[K, 2, part_h, part_w]`` normalised offsets, or ``None`` for no shift.
        output_size: ``ph`` or ``(ph, pw)``.
        spatial_scale: feature-map size / image size.
        group_size: position-sensitive groups per side (default ``output_size``).
        part_size: offset cells per side (default ``output_size``).
        sample_per_part: samples per bin side, 1 to 1024 (default 4, as the original).
        trans_std: offset scale (default 0.1, as the original).

    Returns:
        ``[K, C, ph, pw]``.

    Example:
        >>> import torch
        >>> from scalekit.ops import deform_ps_roi_pool, ps_roi_align
        >>> x = torch.randn(1, 2 * 9, 16, 16)
        >>> boxes = torch.tensor([[0.0, 2, 3, 12, 11]])
        >>> out = deform_ps_roi_pool(x, boxes, None, output_size=3, sample_per_part=2)
        >>> out.shape
        torch.Size([1, 2, 3, 3])
        >>> torch.equal(out, ps_roi_align(x, boxes, 3, sampling_ratio=2))
        True
        >>> shifted = deform_ps_roi_pool(x, boxes, torch.full((1, 2, 3, 3), 0.5), 3, sample_per_part=2)
    """
    ph, pw = _pair(output_size, "output_size")
    gh, gw = _pair(group_size if group_size is not None else (ph, pw), "group_size")
    parth, partw = _pair(part_size if part_size is not None else (ph, pw), "part_size")
    _check_input(input, (gh, gw))
    rois = _rois(input, boxes)
    if offset is not None:
        check_float(offset, "offset")
        expected = [rois.shape[0], 2, parth, partw]
        if list(offset.shape) != expected:
            raise ValueError(f"offset must have shape [K, 2, part_h, part_w] = {expected}, got {list(offset.shape)}")
        if offset.device != input.device:
            raise ValueError(f"offset must be on the device of input ({input.device}), got {offset.device}")
        offset = offset.to(rois.dtype)
    scale, sample_per_part, trans_std = _deform_args(spatial_scale, sample_per_part, trans_std)
    return torch.ops.scalekit.deform_ps_roi_pool(
        input.to(rois.dtype), rois, offset, scale, ph, pw, gh, gw, parth, partw, sample_per_part, trans_std
    ).to(input.dtype)


class PSRoIPool(nn.Module):
    """:func:`ps_roi_pool` as a module.

    Example:
        >>> import torch
        >>> from scalekit.ops import PSRoIPool
        >>> pool = PSRoIPool(output_size=7, spatial_scale=1 / 16)
        >>> pool
        PSRoIPool(output_size=(7, 7), spatial_scale=0.0625)
        >>> pool(torch.randn(1, 3 * 49, 38, 50), [torch.tensor([[10.0, 20, 300, 400]])]).shape
        torch.Size([1, 3, 7, 7])
    """

    def __init__(self, output_size, spatial_scale: float = 1.0) -> None:
        super().__init__()
        self.output_size = _pair(output_size, "output_size")
        self.spatial_scale = _spatial_scale(spatial_scale)

    def forward(self, input: Tensor, boxes: BoxesLike) -> Tensor:
        return ps_roi_pool(input, boxes, self.output_size, self.spatial_scale)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}, spatial_scale={self.spatial_scale}"


class PSRoIAlign(nn.Module):
    """:func:`ps_roi_align` as a module.

    Example:
        >>> import torch
        >>> from scalekit.ops import PSRoIAlign
        >>> align = PSRoIAlign(7, spatial_scale=1 / 16, sampling_ratio=2)
        >>> align(torch.randn(2, 3 * 49, 38, 50), torch.tensor([[1.0, 10, 20, 300, 400]])).shape
        torch.Size([1, 3, 7, 7])
    """

    def __init__(self, output_size, spatial_scale: float = 1.0, sampling_ratio: int = -1,
                 aligned: bool = True) -> None:
        super().__init__()
        self.output_size = _pair(output_size, "output_size")
        self.spatial_scale = _spatial_scale(spatial_scale)
        self.sampling_ratio = _sampling_ratio(sampling_ratio)
        self.aligned = aligned

    def forward(self, input: Tensor, boxes: BoxesLike) -> Tensor:
        return ps_roi_align(input, boxes, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned)

    def extra_repr(self) -> str:
        return (f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
                f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}")


class DeformPSRoIPool(nn.Module):
    """:func:`deform_ps_roi_pool` as a module: ``forward(input, boxes, offset)``, no parameters.

    The offsets come from the caller (``None`` pools without them); for the
    module that predicts its own offsets, as Deformable R-FCN does, see
    :class:`DeformPSRoIPoolPack`.

    Example:
        >>> import torch
        >>> from scalekit.ops import DeformPSRoIPool
        >>> pool = DeformPSRoIPool(output_size=3, spatial_scale=0.5)
        >>> x, boxes = torch.randn(1, 18, 16, 16), torch.tensor([[0.0, 4, 4, 20, 24]])
        >>> pool(x, boxes, torch.zeros(1, 2, 3, 3)).shape
        torch.Size([1, 2, 3, 3])
    """

    def __init__(self, output_size, spatial_scale: float = 1.0, group_size=None, part_size=None,
                 sample_per_part: int = 4, trans_std: float = 0.1) -> None:
        super().__init__()
        self.output_size = _pair(output_size, "output_size")
        self.group_size = _pair(group_size if group_size is not None else self.output_size, "group_size")
        self.part_size = _pair(part_size if part_size is not None else self.output_size, "part_size")
        self.spatial_scale, self.sample_per_part, self.trans_std = _deform_args(
            spatial_scale, sample_per_part, trans_std)

    def forward(self, input: Tensor, boxes: BoxesLike, offset: Tensor | None) -> Tensor:
        return deform_ps_roi_pool(input, boxes, offset, self.output_size, self.spatial_scale, self.group_size,
                                  self.part_size, self.sample_per_part, self.trans_std)

    def extra_repr(self) -> str:
        return (f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, group_size={self.group_size}, "
                f"part_size={self.part_size}, sample_per_part={self.sample_per_part}, trans_std={self.trans_std}")


class DeformPSRoIPoolPack(DeformPSRoIPool):
    """Deformable PSRoI pooling with its own offset branch, as in Deformable R-FCN.

    A first pass pools without offsets; a small fully connected branch
    (``fc -> ReLU -> fc``) predicts the ``[K, 2, part_h, part_w]`` normalised
    offsets from it; a second pass pools with them. The last layer starts at
    zero, so a fresh module pools without offsets and learns to deform.
    ``forward(input, boxes)``; the name follows mmcv's ``*Pack`` modules.

    ``output_size``, ``spatial_scale``, ``group_size``, ``part_size``,
    ``sample_per_part`` and ``trans_std`` are those of :func:`deform_ps_roi_pool`.

    Args:
        out_channels: ``C``, the output channels (input has ``C * group_h * group_w``).
        hidden_dim: width of the offset branch's hidden layer.

    Example:
        >>> import torch
        >>> from scalekit.ops import DeformPSRoIPoolPack
        >>> pool = DeformPSRoIPoolPack(out_channels=2, output_size=3, spatial_scale=0.5)
        >>> x, boxes = torch.randn(1, 18, 16, 16), torch.tensor([[0.0, 4, 4, 20, 24]])
        >>> pool(x, boxes).shape
        torch.Size([1, 2, 3, 3])
        >>> pool.offset(x, boxes).abs().max()  # zero until trained
        tensor(0., grad_fn=<MaxBackward1>)
    """

    def __init__(self, out_channels: int, output_size, spatial_scale: float = 1.0, group_size=None,
                 part_size=None, sample_per_part: int = 4, trans_std: float = 0.1,
                 hidden_dim: int = 256) -> None:
        super().__init__(output_size, spatial_scale, group_size, part_size, sample_per_part, trans_std)
        out_channels = check_int(out_channels, "out_channels", minimum=1)
        hidden_dim = check_int(hidden_dim, "hidden_dim", minimum=1)
        ph, pw = self.output_size
        self.offset_fc = nn.Sequential(
            nn.Linear(out_channels * ph * pw, hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, 2 * self.part_size[0] * self.part_size[1]),
        )
        nn.init.zeros_(self.offset_fc[-1].weight)
        nn.init.zeros_(self.offset_fc[-1].bias)

    def offset(self, input: Tensor, boxes: BoxesLike) -> Tensor:
        """The predicted ``[K, 2, part_h, part_w]`` offsets."""
        plain = super().forward(input, boxes, None)
        return self.offset_fc(plain.flatten(1)).view(plain.shape[0], 2, *self.part_size)

    def forward(self, input: Tensor, boxes: BoxesLike) -> Tensor:
        return super().forward(input, boxes, self.offset(input, boxes))
