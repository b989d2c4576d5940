"""Pyramid levels: how much a level resizes an image, and which object sizes
it is valid for (SNIP, thesis §2.6; SNIPER, §3.3-3.4)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from scalekit.boxes import box_iou

__all__ = ["ScaleSpec", "AreaRange", "SNIP_LEVELS", "SNIPER_LEVELS", "valid_mask", "invalidate_anchors"]


@dataclass(frozen=True)
class ScaleSpec:
    """How a pyramid level resizes an image; build it with one of the class methods.

    ``factor(height, width)`` is the resize factor for an image of that size.

    Example:
        >>> ScaleSpec.shorter_side(800, 1200).factor(480, 640)  # 800 / 480, the longer side 1067 <= 1200
        1.6666666666666667
        >>> ScaleSpec.shorter_side(800, 1200).factor(480, 1000)  # capped: 1200 / 1000
        1.2
        >>> ScaleSpec.fixed(3.0).factor(480, 640), ScaleSpec.fit_longer(512).factor(480, 640)
        (3.0, 0.8)
    """

    kind: str
    size: float
    max_size: float = math.inf

    @classmethod
    def shorter_side(cls, size: float, max_size: float = math.inf) -> "ScaleSpec":
        """Shorter side to ``size`` unless the longer side would exceed ``max_size`` (SNIP's levels)."""
        return cls("shorter_side", float(size), float(max_size))

    @classmethod
    def fixed(cls, factor: float) -> "ScaleSpec":
        """A fixed factor of the original image (SNIPER's 3 and 1.667)."""
        return cls("fixed", float(factor))

    @classmethod
    def fit_longer(cls, size: float) -> "ScaleSpec":
        """Longer side to ``size`` (SNIPER's 512 / max(h, w))."""
        return cls("fit_longer", float(size))

    def __post_init__(self):
        if self.kind not in ("shorter_side", "fixed", "fit_longer"):
            raise ValueError(f"kind must be 'shorter_side', 'fixed' or 'fit_longer', got {self.kind!r}")
        if not (self.size > 0 and self.max_size > 0):
            raise ValueError(f"sizes must be positive, got size={self.size}, max_size={self.max_size}")

    def factor(self, height: float, width: float) -> float:
        if height <= 0 or width <= 0:
            raise ValueError(f"image size must be positive, got ({height}, {width})")
        if self.kind == "fixed":
            return self.size
        if self.kind == "fit_longer":
            return self.size / max(height, width)
        f = self.size / min(height, width)
        return min(f, self.max_size / max(height, width))


@dataclass(frozen=True)
class AreaRange:
    """Valid object sizes of a level: ``lo <= sqrt(area) < hi``, in original-image pixels.

    ``hi`` may be ``math.inf`` (the original code writes -1 for unbounded).

    Example:
        >>> import torch
        >>> boxes = torch.tensor([[0.0, 0, 20, 20], [0, 0, 100, 100], [0, 0, 300, 300]])
        >>> AreaRange(0, 80).valid_mask(boxes)
        tensor([ True, False, False])
        >>> AreaRange(120).valid_mask(boxes)
        tensor([False, False,  True])
    """

    lo: float = 0.0
    hi: float = math.inf

    def __post_init__(self):
        if not (0 <= self.lo < self.hi):
            raise ValueError(f"AreaRange needs 0 <= lo < hi, got ({self.lo}, {self.hi})")

    def valid_mask(self, boxes: Tensor) -> Tensor:
        """``[N]`` bool: whether each ``[N, 4]`` box's size lies in the range."""
        size = ((boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)).sqrt()
        return (size >= self.lo) & (size < self.hi)


def valid_mask(boxes: Tensor, area_range: AreaRange) -> Tensor:
    """``area_range.valid_mask(boxes)``."""
    return area_range.valid_mask(boxes)


# SNIP (thesis §2.6-2.7): (shorter side, max longer side) with valid ranges.
SNIP_LEVELS = (
    (ScaleSpec.shorter_side(1400, 2000), AreaRange(0, 80)),
    (ScaleSpec.shorter_side(800, 1200), AreaRange(40, 160)),
    (ScaleSpec.shorter_side(480, 800), AreaRange(120, math.inf)),
)

# SNIPER (thesis §3.4; pairing as the released code): 3x, 1.667x and longer side 512.
SNIPER_LEVELS = (
    (ScaleSpec.fixed(3.0), AreaRange(0, 80)),
    (ScaleSpec.fixed(1.667), AreaRange(32, 150)),
    (ScaleSpec.fit_longer(512), AreaRange(120, math.inf)),
)


def invalidate_anchors(anchors: Tensor, gt_boxes: Tensor, gt_valid: Tensor, iou_threshold: float = 0.3) -> Tensor:
    """SNIP's rule: anchors overlapping an *invalid* ground truth by IoU > 0.3 are ignored.

    Invalid ground truth (outside the level's range) must not teach the RPN
    that its anchors are background (thesis §2.6.1: "their gradients are set
    to zero").

    Args:
        anchors: ``[A, 4]``.
        gt_boxes: ``[G, 4]``.
        gt_valid: ``[G]`` bool, valid at this level.
        iou_threshold: 0.3 in the thesis.

    Returns:
        ``[A]`` bool, True where the anchor is ignored in RPN training.

    Example:
        >>> import torch
        >>> anchors = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 30], [50, 50, 60, 60]])
        >>> gt = torch.tensor([[0.0, 0, 10, 10], [50, 50, 60, 60]])
        >>> invalidate_anchors(anchors, gt, gt_valid=torch.tensor([False, True]))  # IoU 1, 1/3, 0 with the invalid box
        tensor([ True,  True, False])
    """
    ignored = torch.zeros(anchors.shape[0], dtype=torch.bool, device=anchors.device)
    invalid = ~gt_valid.to(torch.bool)
    if anchors.numel() == 0 or not invalid.any():
        return ignored
    iou = box_iou(anchors, gt_boxes[invalid].to(anchors.dtype)).nan_to_num(0.0)
    return (iou > iou_threshold).any(1)
