"""Pyramid levels: how much a level resizes an image, and which object sizes
it is valid for (SNIP, thesis §2.6; SNIPER, §3.3-3.4)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from scalekit.boxes import _check_boxes, near_ignore, size_in_range

__all__ = ["ScaleSpec", "AreaRange", "SNIP_LEVELS", "SNIPER_LEVELS", "invalidate_anchors", "scaled_levels"]


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
        try:
            size, max_size = float(self.size), float(self.max_size)
        except (TypeError, ValueError):
            raise TypeError(f"ScaleSpec sizes must be numbers, got size={self.size!r}, max_size={self.max_size!r}") from None
        if not (math.isfinite(size) and size > 0 and max_size > 0) or math.isnan(max_size):
            raise ValueError(f"ScaleSpec needs a finite size > 0 and max_size > 0 (may be inf), got size={self.size}, "
                             f"max_size={self.max_size}")
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "max_size", max_size)

    def scaled(self, s: float) -> "ScaleSpec":
        """The same resize with every pixel size multiplied by ``s``; a fixed factor stays.

        For running the thesis' recipes at another resolution (e.g. half-size images: ``s = 0.5``).

        Example:
            >>> ScaleSpec.shorter_side(800, 1200).scaled(0.5)
            ScaleSpec(kind='shorter_side', size=400.0, max_size=600.0)
            >>> ScaleSpec.fixed(3.0).scaled(0.5).size
            3.0
        """
        s = _positive(s, "s")
        if self.kind == "fixed":
            return self
        return ScaleSpec(self.kind, self.size * s, self.max_size * s)

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
    ``rpn``: the RPN's own ``(lo, hi)`` at this level when it differs from the
    classifier's (thesis §2.7.1: "Since in RPN even a one pixel feature map can
    generate a proposal we use a validity range of [0,160] at (800,1200)"); ground
    truth outside it becomes ``ignore_boxes`` (anchors near it are ignored),
    inside it trains the RPN. ``None``: the classifier's range.

    Example:
        >>> import torch
        >>> boxes = torch.tensor([[0.0, 0, 20, 20], [0, 0, 100, 100], [0, 0, 300, 300]])
        >>> AreaRange(0, 80).valid_mask(boxes)
        tensor([ True, False, False])
        >>> AreaRange(120).valid_mask(boxes)
        tensor([False, False,  True])
        >>> AreaRange(40, 160, rpn=(0, 160)).rpn_range
        AreaRange(lo=0.0, hi=160.0, rpn=None)
    """

    lo: float = 0.0
    hi: float = math.inf
    rpn: tuple[float, float] | None = None

    def __post_init__(self):
        try:
            lo, hi = float(self.lo), float(self.hi)
        except (TypeError, ValueError):
            raise TypeError(f"AreaRange bounds must be numbers, got ({self.lo!r}, {self.hi!r})") from None
        if not (0 <= lo < hi):
            raise ValueError(f"AreaRange needs 0 <= lo < hi, got ({self.lo}, {self.hi})")
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)
        if self.rpn is not None:
            rpn = self.rpn if isinstance(self.rpn, AreaRange) else AreaRange(*self.rpn)
            object.__setattr__(self, "rpn", (rpn.lo, rpn.hi))

    @property
    def rpn_range(self) -> "AreaRange":
        """The range that decides which ground truth trains the RPN (``rpn``, or this range)."""
        return self if self.rpn is None else AreaRange(*self.rpn)

    def valid_mask(self, boxes: Tensor) -> Tensor:
        """``[N]`` bool: whether each ``[N, 4]`` box's size lies in the range (:func:`scalekit.boxes.size_in_range`)."""
        return size_in_range(boxes, self.lo, self.hi)

    def scaled(self, s: float) -> "AreaRange":
        """The range in pixels of an image resized by ``s`` (the RPN range too).

        Example:
            >>> AreaRange(40, 160, rpn=(0, 160)).scaled(0.5)
            AreaRange(lo=20.0, hi=80.0, rpn=(0.0, 80.0))
        """
        s = _positive(s, "s")
        rpn = None if self.rpn is None else (self.rpn[0] * s, self.rpn[1] * s)
        return AreaRange(self.lo * s, self.hi * s, rpn)


def _positive(value, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {value!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be finite and > 0, got {value}")
    return v


def scaled_levels(levels, s: float) -> tuple:
    """``levels`` with every pixel size multiplied by ``s`` (:meth:`ScaleSpec.scaled`, :meth:`AreaRange.scaled`).

    Example:
        >>> scaled_levels(SNIPER_LEVELS, 0.5)[1]
        (ScaleSpec(kind='fixed', size=1.667, max_size=inf), AreaRange(lo=16.0, hi=75.0, rpn=None))
    """
    return tuple((spec.scaled(s), area.scaled(s)) for spec, area in levels)


# SNIP (thesis §2.6-2.7): (shorter side, max longer side) with valid ranges.
SNIP_LEVELS = (
    (ScaleSpec.shorter_side(1400, 2000), AreaRange(0, 80)),
    (ScaleSpec.shorter_side(800, 1200), AreaRange(40, 160, rpn=(0, 160))),  # RPN range: §2.7.1
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
    _check_boxes(anchors, "anchors")
    _check_boxes(gt_boxes, "gt_boxes")
    if not isinstance(gt_valid, Tensor) or gt_valid.shape != gt_boxes.shape[:1]:
        raise ValueError(f"gt_valid must be [G] ({gt_boxes.shape[0]}), got {getattr(gt_valid, 'shape', gt_valid)}")
    invalid = gt_valid.to(torch.bool).logical_not()
    return near_ignore(anchors, gt_boxes[invalid], iou_threshold)
