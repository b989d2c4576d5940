"""Box arithmetic: area, pairwise IoU, Fast R-CNN matching and box coding of
``(x1, y1, x2, y2)`` boxes in float pixels.

``pixel_offset`` selects the pixel convention: 0 (torchvision, continuous
coordinates) or 1 (the "+1" of py-faster-rcnn, the original Soft-NMS and MXNet
R-FCN, where a box from pixel 0 to pixel 9 is 10 pixels wide).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["box_area", "box_iou", "max_iou", "match_rois", "encode_boxes", "decode_boxes", "BOX_WEIGHTS"]

# Fast R-CNN / R-FCN regression normalisation: deltas divided by (0.1, 0.1, 0.2, 0.2).
BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
_MAX_LOG = math.log(1000.0 / 16)


def _check_boxes(boxes, name: str) -> None:
    """``boxes`` must be an ``[N, 4]`` real-valued tensor; the error names ``name``."""
    if not isinstance(boxes, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape [N, 4], got {type(boxes).__name__}")
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name} must have shape [N, 4] (x1, y1, x2, y2), got {list(boxes.shape)}")
    if boxes.dtype == torch.bool or boxes.is_complex():
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
    if others.numel() == 0 or boxes.numel() == 0:
        return boxes.new_zeros(boxes.shape[0])
    return box_iou(boxes, others.to(boxes.dtype)).nan_to_num(0.0).max(1).values

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
    matched = torch.full((rois.shape[0],), -1, dtype=torch.int64, device=rois.device)
    if gt_boxes.numel() == 0 or rois.numel() == 0:
        return matched
    iou = box_iou(rois, gt_boxes.to(rois.dtype)).nan_to_num(0.0)
    best, idx = iou.max(1)
    positive = best >= iou_threshold if inclusive else best > iou_threshold
    return torch.where(positive, idx, matched)


def encode_boxes(rois: Tensor, gt: Tensor, weights=BOX_WEIGHTS) -> Tensor:
    """Regression targets ``(dx, dy, dw, dh)`` of ``gt`` relative to ``rois`` (both ``[R, 4]``)."""
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
    wr, hr = rois[:, 2] - rois[:, 0], rois[:, 3] - rois[:, 1]
    xr, yr = rois[:, 0] + 0.5 * wr, rois[:, 1] + 0.5 * hr
    wx, wy, ww, wh = weights
    dx, dy = deltas[:, 0] / wx, deltas[:, 1] / wy
    dw, dh = (deltas[:, 2] / ww).clamp(max=_MAX_LOG), (deltas[:, 3] / wh).clamp(max=_MAX_LOG)
    x, y, w, h = xr + dx * wr, yr + dy * hr, wr * torch.exp(dw), hr * torch.exp(dh)
    return torch.stack([x - 0.5 * w, y - 0.5 * h, x + 0.5 * w, y + 0.5 * h], 1)
