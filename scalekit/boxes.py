"""Box arithmetic: area and pairwise IoU of ``(x1, y1, x2, y2)`` boxes in float pixels.

``pixel_offset`` selects the pixel convention: 0 (torchvision, continuous
coordinates) or 1 (the "+1" of py-faster-rcnn, the original Soft-NMS and MXNet
R-FCN, where a box from pixel 0 to pixel 9 is 10 pixels wide).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["box_area", "box_iou"]


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
    area1 = box_area(boxes1, pixel_offset=pixel_offset)
    area2 = box_area(boxes2, pixel_offset=pixel_offset)
    lt = torch.maximum(boxes1[:, None, :2], boxes2[None, :, :2])
    rb = torch.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = (rb - lt + pixel_offset).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area1[:, None] + area2[None, :] - inter)
