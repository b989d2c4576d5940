"""SNIP inference: run any detector on every pyramid level, keep each level's
valid detections, merge with Soft-NMS (thesis §2.6.1, §3.4.4)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from scalekit.ops import batched_soft_nms
from scalekit.scale.levels import SNIP_LEVELS, AreaRange, ScaleSpec

__all__ = ["Pyramid", "resize_image"]

Detector = Callable[[Tensor], tuple[Tensor, Tensor, Tensor]]


def resize_image(image: Tensor, factor: float) -> tuple[Tensor, float, float]:
    """Bilinear resize of ``[C, H, W]`` by ``factor``; returns the image and the
    exact ``(y, x)`` factors after rounding the size to whole pixels."""
    h, w = image.shape[-2:]
    nh, nw = max(1, round(h * factor)), max(1, round(w * factor))
    out = F.interpolate(image[None].float(), size=(nh, nw), mode="bilinear", align_corners=False)[0]
    return out.to(image.dtype) if image.is_floating_point() else out, nh / h, nw / w


class Pyramid:
    """SNIP inference over pyramid levels, in one call.

    ``detect(detector, image)``: resize the image for each level, run
    ``detector(resized) -> (boxes [N, 4], scores [N], labels [N])`` on it, map
    the boxes back to the original image, keep those whose size is in the
    level's valid range, and merge all levels per class with Gaussian Soft-NMS
    (SNIPER's test setting: sigma 0.55, at most 200 detections per image).

    Args:
        levels: ``(ScaleSpec, AreaRange)`` pairs (default: SNIP's test levels).
        sigma, iou_threshold, method: Soft-NMS parameters (see :func:`~scalekit.ops.soft_nms`).
        score_threshold: detections below it are dropped (0.001, as SNIPER).
        max_detections: per image after merging (200, as SNIPER).

    Example:
        >>> import torch
        >>> from scalekit.scale import Pyramid
        >>> def detector(image):  # finds one 40x40 box at the centre of whatever it is given
        ...     h, w = image.shape[-2:]
        ...     box = torch.tensor([[w / 2 - 20, h / 2 - 20, w / 2 + 20, h / 2 + 20]])
        ...     return box, torch.tensor([0.9]), torch.tensor([1])
        >>> dets = Pyramid().detect(detector, torch.zeros(3, 400, 600))
        >>> dets["boxes"].round()  # only the 1400-level's box is small enough (40 / 3.5 px)
        tensor([[294., 194., 306., 206.]])
    """

    def __init__(self, levels: Sequence[tuple[ScaleSpec, AreaRange]] = SNIP_LEVELS, *, sigma: float = 0.55,
                 iou_threshold: float = 0.3, method: str = "gaussian", score_threshold: float = 0.001,
                 max_detections: int = 200) -> None:
        if len(levels) == 0:
            raise ValueError("levels must not be empty")
        self.levels = tuple(levels)
        self.sigma, self.iou_threshold, self.method = sigma, iou_threshold, method
        self.score_threshold, self.max_detections = score_threshold, max_detections

    def detect_levels(self, detector: Detector, image: Tensor) -> list[dict]:
        """Per level, the valid detections in original-image coordinates."""
        if image.dim() != 3:
            raise ValueError(f"image must be [C, H, W], got {list(image.shape)}")
        h, w = image.shape[-2:]
        out = []
        for spec, area in self.levels:
            resized, fy, fx = resize_image(image, spec.factor(h, w))
            boxes, scores, labels = detector(resized)
            boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
            boxes = boxes / torch.tensor([fx, fy, fx, fy], dtype=boxes.dtype, device=boxes.device)
            keep = area.valid_mask(boxes)
            out.append({"boxes": boxes[keep], "scores": torch.as_tensor(scores).reshape(-1)[keep],
                        "labels": torch.as_tensor(labels).reshape(-1)[keep]})
        return out

    def merge(self, per_level: list[dict]) -> dict:
        """All levels' detections merged per class by Soft-NMS."""
        boxes = torch.cat([d["boxes"] for d in per_level])
        scores = torch.cat([d["scores"].to(torch.float32) for d in per_level])
        labels = torch.cat([d["labels"].to(torch.int64) for d in per_level])
        keep, kept_scores = batched_soft_nms(boxes, scores, labels, self.iou_threshold, self.sigma,
                                             self.score_threshold, self.method)
        keep, kept_scores = keep[: self.max_detections], kept_scores[: self.max_detections]
        return {"boxes": boxes[keep], "scores": kept_scores, "labels": labels[keep]}

    def detect(self, detector: Detector, image: Tensor) -> dict:
        """SNIP inference: ``{"boxes", "scores", "labels"}`` in original-image coordinates."""
        return self.merge(self.detect_levels(detector, image))
