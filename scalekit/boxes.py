"""Box arithmetic: area, pairwise IoU, Fast R-CNN matching and box coding of
``(x1, y1, x2, y2)`` boxes in float pixels.

``pixel_offset`` selects the pixel convention: 0 (torchvision, continuous
coordinates) or 1 (the "+1" of py-faster-rcnn, the original Soft-NMS and MXNet
R-FCN, where a box from pixel 0 to pixel 9 is 10 pixels wide).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from scalekit.ops._checks import check_number

__all__ = ["box_area", "box_iou", "max_iou", "box_size", "size_in_range", "out_of_range", "near_ignore", "inside_window", "match_rois",
           "encode_boxes", "decode_boxes", "BOX_WEIGHTS"]

# Fast R-CNN / R-FCN regression normalisation: deltas divided by (0.1, 0.1, 0.2, 0.2).
BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
_MAX_LOG = math.log(1000.0 / 16)


def _check_boxes(boxes, name: str, *, numpy_too: bool = False) -> None:
    """``boxes`` must be an ``[N, 4]`` real-valued tensor (or numpy array, ``numpy_too``);
    the error names ``name``. Shape and dtype only: no pass over the values."""
    kinds = (Tensor, np.ndarray) if numpy_too else (Tensor,)
    if not isinstance(boxes, kinds):
        raise TypeError(f"{name} must be a torch.Tensor{' or numpy array' if numpy_too else ''} of shape [N, 4], "
                        f"got {type(boxes).__name__}")
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name} must have shape [N, 4] (x1, y1, x2, y2), got {list(boxes.shape)}")
    bad = (boxes.dtype == torch.bool or boxes.is_complex()) if isinstance(boxes, Tensor) else boxes.dtype.kind not in "iuf"
    if bad:
        raise TypeError(f"{name} must hold real numbers, got {boxes.dtype}")


def box_area(boxes: Tensor, *, pixel_offset: float = 0.0) -> Tensor:
    """Area of each box.

    Args:
        boxes: ``[N, 4]`` float boxes ``(x1, y1, x2, y2)``.
        pixel_offset: 0 or 1, see the module docstring.

    Returns:
        ``[N]`` areas, dtype of ``boxes``.

    Example:
        >>> import torch
        >>> from scalekit.boxes import box_area
        >>> box_area(torch.tensor([[0.0, 0.0, 2.0, 3.0]]))
        tensor([6.])
        >>> box_area(torch.tensor([[0.0, 0.0, 2.0, 3.0]]), pixel_offset=1)
        tensor([12.])
    """
    _check_boxes(boxes, "boxes")
    return (boxes[:, 2] - boxes[:, 0] + pixel_offset) * (boxes[:, 3] - boxes[:, 1] + pixel_offset)


def box_iou(boxes1: Tensor, boxes2: Tensor, *, pixel_offset: float = 0.0) -> Tensor:
    """Pairwise intersection over union.

    Args:
        boxes1: ``[N, 4]`` float boxes.
        boxes2: ``[M, 4]`` float boxes.
        pixel_offset: 0 or 1, see the module docstring.

    Returns:
        ``[N, M]`` IoUs. Degenerate pairs (zero union) give NaN, as in torchvision.

    Example:
        >>> import torch
        >>> from scalekit.boxes import box_iou
        >>> a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
        >>> b = torch.tensor([[1.0, 0.0, 3.0, 2.0], [5.0, 5.0, 6.0, 6.0]])
        >>> box_iou(a, b)
        tensor([[0.3333, 0.0000]])
    """
    _check_boxes(boxes1, "boxes1")
    _check_boxes(boxes2, "boxes2")
    area1 = box_area(boxes1, pixel_offset=pixel_offset)
    area2 = box_area(boxes2, pixel_offset=pixel_offset)
    lt = torch.maximum(boxes1[:, None, :2], boxes2[None, :, :2])
    rb = torch.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = (rb - lt + pixel_offset).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area1[:, None] + area2[None, :] - inter)


def max_iou(boxes: Tensor, others: Tensor) -> Tensor:
    """Each box's highest IoU with any of ``others`` (0 when there are none, and for degenerate pairs).

    Args:
        boxes: ``[N, 4]`` float boxes.
        others: ``[M, 4]`` boxes, cast to the dtype of ``boxes``.

    Returns:
        ``[N]`` IoUs.

    Example:
        >>> import torch
        >>> from scalekit.boxes import max_iou
        >>> max_iou(torch.tensor([[0.0, 0, 2, 2], [9, 9, 10, 10]]), torch.tensor([[1.0, 0, 3, 2], [0, 0, 2, 4]]))
        tensor([0.5000, 0.0000])
    """
    _check_boxes(boxes, "boxes")
    _check_boxes(others, "others")
    if others.numel() == 0 or boxes.numel() == 0:
        return boxes.new_zeros(boxes.shape[0])
    return box_iou(boxes, others.to(boxes.dtype)).nan_to_num(0.0).max(1).values


def box_size(boxes: Tensor) -> Tensor:
    """Each box's size ``sqrt(width * height)`` (0 for a reversed box), the measure of SNIP's ranges.

    Args:
        boxes: ``[N, 4]`` float boxes, a tensor or a numpy array (chip planning runs on numpy).

    Returns:
        ``[N]`` sizes, dtype and kind of ``boxes``.

    Example:
        >>> import torch
        >>> from scalekit.boxes import box_size
        >>> box_size(torch.tensor([[0.0, 0, 20, 80], [5, 5, 1, 9]]))
        tensor([40.,  0.])
    """
    _check_boxes(boxes, "boxes", numpy_too=True)
    # .clip and ** work on torch tensors and numpy arrays alike
    return ((boxes[:, 2] - boxes[:, 0]).clip(min=0) * (boxes[:, 3] - boxes[:, 1]).clip(min=0)) ** 0.5


def size_in_range(boxes: Tensor, lo, hi) -> Tensor:
    """Whether each box's size (:func:`box_size`) lies in ``[lo, hi)``; the one validity
    test of a scale's range (SNIP, thesis §2.6.1; SNIPER, §3.3.4).

    Args:
        boxes: ``[N, 4]`` float boxes (a tensor or a numpy array).
        lo: smallest valid size (inclusive); or ``[L]`` sizes, one per range
            (the kind of ``boxes``), to test ``L`` ranges at once.
        hi: size from which boxes are invalid (exclusive; ``math.inf`` for none);
            ``[L]`` with ``lo``.

    Returns:
        ``[N]`` bool; ``[L, N]`` for ``[L]`` ranges.

    Example:
        >>> import math, torch
        >>> from scalekit.boxes import size_in_range
        >>> size_in_range(torch.tensor([[0.0, 0, 20, 20], [0, 0, 80, 80]]), 0, 80)
        tensor([ True, False])
        >>> size_in_range(torch.tensor([[0.0, 0, 20, 20], [0, 0, 80, 80]]), torch.tensor([0.0, 32]), torch.tensor([32.0, math.inf]))
        tensor([[ True, False],
                [False,  True]])
    """
    size = box_size(boxes)
    if isinstance(lo, (Tensor, np.ndarray)) and lo.ndim == 1:
        if not (isinstance(hi, type(lo)) and hi.shape == lo.shape):
            raise ValueError(f"hi must be a {type(lo).__name__} of the shape of lo {tuple(lo.shape)}, got {hi!r}")
        if (lo != lo).any() or (hi != hi).any():
            raise ValueError(f"lo and hi must not be NaN, got {lo.tolist()} and {hi.tolist()}")
        size, lo, hi = size[None], lo[:, None], hi[:, None]
    else:
        lo, hi = check_number(lo, "lo"), check_number(hi, "hi")
    return (size >= lo) & (size < hi)


def out_of_range(boxes: Tensor, valid_range, *, name: str = "valid_range") -> Tensor:
    """Which boxes' size lies outside a scale's valid range: the RoIs SNIP and
    SNIPER ignore (thesis §3.3.4: "proposals which do not fall in R^i are ignored").

    Args:
        boxes: ``[N, 4]`` proposals.
        valid_range: ``[2]`` tensor ``(lo, hi)`` of ``sqrt(area)`` in the boxes'
            pixels, ``0 <= lo < hi`` (``hi`` may be inf), as ``target["valid_range"]``;
            ``None``: every size is valid.
        name: how errors call ``valid_range``.

    Returns:
        ``[N]`` bool, True outside ``[lo, hi)``.

    Example:
        >>> import math, torch
        >>> from scalekit.boxes import out_of_range
        >>> out_of_range(torch.tensor([[0.0, 0, 20, 20], [0, 0, 300, 300]]), torch.tensor([0.0, 160.0]))
        tensor([False,  True])
    """
    _check_boxes(boxes, "boxes")
    if valid_range is None:
        return torch.zeros(boxes.shape[0], dtype=torch.bool, device=boxes.device)
    if not isinstance(valid_range, Tensor) or valid_range.shape != (2,):
        got = list(valid_range.shape) if isinstance(valid_range, Tensor) else type(valid_range).__name__
        raise ValueError(f"{name} must be a [2] tensor (lo, hi) of sqrt(area), got {got}")
    lo, hi = valid_range.tolist()
    if not (0 <= lo < hi):  # NaN fails too
        raise ValueError(f"{name} must satisfy 0 <= lo < hi (hi may be inf), got ({lo}, {hi})")
    return ~size_in_range(boxes, lo, hi)


def near_ignore(boxes: Tensor, ignore_boxes: Tensor, iou_threshold: float, *, inclusive: bool = False,
                gt_boxes: Tensor | None = None) -> Tensor:
    """Which boxes overlap an ignore box enough to take part in no loss: the one
    "near an ignore box" rule of the RPN, the RoI heads and anchor invalidation.

    A box is near an ignore box when its IoU with some ignore box exceeds
    ``iou_threshold`` (or reaches it, ``inclusive=True``) and, when
    ``gt_boxes`` is given, is higher than its IoU with every ground-truth box
    (a proposal that matches an object better stays that object's sample).
    The RPN uses ``> 0.3`` against invalid ground truth (thesis §2.6.1:
    anchors "which have an overlap greater than 0.3 with an invalid ground
    truth box are excluded"); the RoI heads ``>= 0.5`` with ``gt_boxes``.

    Args:
        boxes: ``[N, 4]`` anchors or proposals.
        ignore_boxes: ``[I, 4]`` boxes to ignore (cast to the dtype of ``boxes``).
        iou_threshold: the IoU that makes a box near.
        inclusive: ``>=`` instead of ``>``.
        gt_boxes: ``[G, 4]`` ground truth that wins ties of IoU, or ``None``.

    Returns:
        ``[N]`` bool.

    Example:
        >>> import torch
        >>> from scalekit.boxes import near_ignore
        >>> anchors = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 30], [50, 50, 60, 60]])
        >>> near_ignore(anchors, torch.tensor([[0.0, 0, 10, 10]]), 0.3)  # IoU 1, 1/3, 0
        tensor([ True,  True, False])
    """
    _check_boxes(boxes, "boxes")
    _check_boxes(ignore_boxes, "ignore_boxes")
    if gt_boxes is not None:
        _check_boxes(gt_boxes, "gt_boxes")
    iou_threshold = check_number(iou_threshold, "iou_threshold")
    best = max_iou(boxes, ignore_boxes)
    near = best >= iou_threshold if inclusive else best > iou_threshold
    if ignore_boxes.numel() == 0:
        return torch.zeros_like(near)
    if gt_boxes is not None:
        near &= best > max_iou(boxes, gt_boxes)
    return near


def inside_window(boxes: Tensor, windows: Tensor, *, tol: float = 0.0) -> Tensor:
    """Whether each box lies wholly inside each window (edges included, ``tol`` of slack).

    The one "box inside a window" test of SNIP's and SNIPER's chips; it takes
    torch tensors or numpy arrays (chip planning runs on numpy) and returns the same kind.

    Args:
        boxes: ``[N, 4]`` boxes.
        windows: ``[W, 4]`` windows (or one ``[4]`` window), same coordinates.
        tol: slack in pixels added around every window.

    Returns:
        ``[W, N]`` bool (``[N]`` for one ``[4]`` window).

    Example:
        >>> import torch
        >>> from scalekit.boxes import inside_window
        >>> inside_window(torch.tensor([[10.0, 10, 20, 20], [90, 90, 120, 120]]), torch.tensor([0.0, 0, 100, 100]))
        tensor([ True, False])
    """
    _check_boxes(boxes, "boxes", numpy_too=True)
    one = windows.ndim == 1
    if not (one and windows.shape[0] == 4):
        _check_boxes(windows, "windows", numpy_too=True)
    w, b = windows.reshape(-1, 4), boxes
    out = ((w[:, None, 0] - tol <= b[None, :, 0]) & (w[:, None, 1] - tol <= b[None, :, 1])
           & (b[None, :, 2] <= w[:, None, 2] + tol) & (b[None, :, 3] <= w[:, None, 3] + tol))
    return out[0] if one else out


def match_rois(rois: Tensor, gt_boxes: Tensor, iou_threshold: float = 0.5, *, inclusive: bool = True) -> Tensor:
    """Fast R-CNN label assignment: the ground truth each RoI is positive for.

    Args:
        rois: ``[R, 4]`` proposals of one image.
        gt_boxes: ``[G, 4]`` ground truth of that image.
        iou_threshold: foreground IoU (0.5 in Fast R-CNN, R-FCN and R-FCN-3000).
        inclusive: positive at IoU ``>= iou_threshold`` (R-FCN) or only ``>``
            (R-FCN-3000, thesis §4.4.4).

    Returns:
        ``[R]`` int64: index of the ground truth of highest IoU, or -1 (background).

    Example:
        >>> import torch
        >>> from scalekit.boxes import match_rois
        >>> rois = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 20], [50, 50, 60, 60]])
        >>> match_rois(rois, torch.tensor([[0.0, 0, 10, 10]]))  # IoU 1, 0.5, 0
        tensor([ 0,  0, -1])
        >>> match_rois(rois, torch.tensor([[0.0, 0, 10, 10]]), inclusive=False)
        tensor([ 0, -1, -1])
    """
    _check_boxes(rois, "rois")
    _check_boxes(gt_boxes, "gt_boxes")
    iou_threshold = check_number(iou_threshold, "iou_threshold")
    matched = torch.full((rois.shape[0],), -1, dtype=torch.int64, device=rois.device)
    if gt_boxes.numel() == 0 or rois.numel() == 0:
        return matched
    iou = box_iou(rois, gt_boxes.to(rois.dtype)).nan_to_num(0.0)
    best, idx = iou.max(1)
    positive = best >= iou_threshold if inclusive else best > iou_threshold
    return torch.where(positive, idx, matched)


def _check_pairs(rois, other, name: str) -> None:
    _check_boxes(rois, "rois")
    _check_boxes(other, name)
    if other.shape[0] != rois.shape[0]:
        raise ValueError(f"{name} must have one row per RoI ({rois.shape[0]}), got {other.shape[0]}")
    if not (rois.is_floating_point() and other.is_floating_point()):
        raise TypeError(f"rois and {name} must be floating point, got {rois.dtype} and {other.dtype}")


def encode_boxes(rois: Tensor, gt: Tensor, weights=BOX_WEIGHTS) -> Tensor:
    """Regression targets ``(dx, dy, dw, dh)`` of ``gt`` relative to ``rois`` (both ``[R, 4]``)."""
    _check_pairs(rois, gt, "gt")
    wr, hr = rois[:, 2] - rois[:, 0], rois[:, 3] - rois[:, 1]
    xr, yr = rois[:, 0] + 0.5 * wr, rois[:, 1] + 0.5 * hr
    wg, hg = gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1]
    xg, yg = gt[:, 0] + 0.5 * wg, gt[:, 1] + 0.5 * hg
    wx, wy, ww, wh = weights
    wr, hr = wr.clamp(min=1e-6), hr.clamp(min=1e-6)
    return torch.stack([wx * (xg - xr) / wr, wy * (yg - yr) / hr,
                        ww * torch.log(wg.clamp(min=1e-6) / wr), wh * torch.log(hg.clamp(min=1e-6) / hr)], 1)


def decode_boxes(rois: Tensor, deltas: Tensor, weights=BOX_WEIGHTS) -> Tensor:
    """Boxes from ``[R, 4]`` deltas applied to ``[R, 4]`` RoIs (inverse of :func:`encode_boxes`).

    Example:
        >>> import torch
        >>> from scalekit.boxes import decode_boxes, encode_boxes
        >>> rois, gt = torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([[2.0, 1, 14, 9]])
        >>> decode_boxes(rois, encode_boxes(rois, gt))
        tensor([[ 2.,  1., 14.,  9.]])
    """
    _check_pairs(rois, deltas, "deltas")
    wr, hr = rois[:, 2] - rois[:, 0], rois[:, 3] - rois[:, 1]
    xr, yr = rois[:, 0] + 0.5 * wr, rois[:, 1] + 0.5 * hr
    wx, wy, ww, wh = weights
    dx, dy = deltas[:, 0] / wx, deltas[:, 1] / wy
    dw, dh = (deltas[:, 2] / ww).clamp(max=_MAX_LOG), (deltas[:, 3] / wh).clamp(max=_MAX_LOG)
    x, y, w, h = xr + dx * wr, yr + dy * hr, wr * torch.exp(dw), hr * torch.exp(dh)
    return torch.stack([x - 0.5 * w, y - 0.5 * h, x + 0.5 * w, y + 0.5 * h], 1)
