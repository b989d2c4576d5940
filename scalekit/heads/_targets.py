"""What both heads share: Fast R-CNN label assignment, box coding, smooth-L1
and online hard example mining (OHEM)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from scalekit.boxes import box_iou

__all__ = ["match_rois", "encode_boxes", "decode_boxes", "BOX_WEIGHTS"]

# Fast R-CNN / R-FCN regression normalisation: deltas divided by (0.1, 0.1, 0.2, 0.2).
BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
_MAX_LOG = math.log(1000.0 / 16)


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


def clip_to_images(boxes: Tensor, image_index: Tensor, image_sizes) -> Tensor:
    """Clip ``[R, 4]`` boxes to their image, ``image_sizes[i] = (height, width)``; ``None``: unchanged."""
    if image_sizes is None:
        return boxes
    size = torch.as_tensor(image_sizes, dtype=boxes.dtype, device=boxes.device).reshape(-1, 2)[image_index]
    return boxes.clamp(min=0).minimum(torch.stack([size[:, 1], size[:, 0], size[:, 1], size[:, 0]], 1))


def hard_examples(per_roi_loss: Tensor, image_index: Tensor, per_image: int | None) -> Tensor:
    """OHEM (Shrivastava et al. 2016, as R-FCN): mask of the ``per_image``
    highest-loss RoIs of each image (all RoIs when ``per_image`` is None)."""
    if per_image is None:
        return torch.ones_like(per_roi_loss, dtype=torch.bool)
    keep = torch.zeros_like(per_roi_loss, dtype=torch.bool)
    for i in image_index.unique():
        members = (image_index == i).nonzero().flatten()
        top = per_roi_loss[members].detach().topk(min(per_image, members.numel())).indices
        keep[members[top]] = True
    return keep


def smooth_l1(input: Tensor, target: Tensor, beta: float) -> Tensor:
    """Per-RoI smooth-L1 summed over the 4 coordinates."""
    return F.smooth_l1_loss(input, target, beta=beta, reduction="none").sum(1)


def rois_with_index(proposals: list[Tensor]) -> tuple[Tensor, Tensor]:
    """``[R, 5]`` RoIs (batch index first) and the ``[R]`` image index from per-image boxes."""
    if len(proposals) == 0:
        raise ValueError("proposals must hold one [L, 4] tensor per image")
    idx = torch.cat([torch.full((p.shape[0],), i, dtype=torch.int64, device=p.device) for i, p in enumerate(proposals)])
    boxes = torch.cat(list(proposals))
    return torch.cat([idx[:, None].to(boxes.dtype), boxes], 1), idx
