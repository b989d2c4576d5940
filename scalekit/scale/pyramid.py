"""SNIP inference: run any detector on every pyramid level, keep each level's
valid detections, merge with Soft-NMS (thesis §2.6.1, §3.4.4)."""

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from scalekit.ops import batched_soft_nms
from scalekit.scale.levels import SNIP_LEVELS, AreaRange, ScaleSpec

__all__ = ["Pyramid", "resize_image", "register_detector_adapter"]

Detector = Callable[[Tensor], object]
LevelDetector = Callable[[list[Tensor]], list]
_ADAPTERS: list[Callable[[object], LevelDetector | None]] = []


def register_detector_adapter(adapter: Callable[[object], LevelDetector | None]):
    """Teach :meth:`Pyramid.detect` a kind of detector.

    ``adapter(detector)`` returns ``None`` for detectors it does not know, else
    a function that takes a list of ``[C, H, W]`` images of one level and
    returns, per image, detections in that image's pixels (a dict with
    ``"boxes"``, ``"scores"``, ``"labels"``) — running the model so that each
    image reaches its backbone at the size given. :mod:`scalekit.detection`
    registers torchvision's detectors this way; an adapter for a detectron2 or
    MMDetection model is a few lines. Later registrations are tried first.
    Usable as a decorator.
    """
    _ADAPTERS.append(adapter)
    return adapter


def resize_image(image: Tensor, factor: float) -> tuple[Tensor, float, float]:
    """Bilinear resize of ``[C, H, W]`` by ``factor``; returns the image and the
    exact ``(y, x)`` factors after rounding the size to whole pixels.

    Example:
        >>> import torch
        >>> from scalekit.scale import resize_image
        >>> image, fy, fx = resize_image(torch.rand(3, 100, 150), 1.5)
        >>> image.shape, fy, fx
        (torch.Size([3, 150, 225]), 1.5, 1.5)
    """
    if not isinstance(factor, (int, float)) or isinstance(factor, bool) or not math.isfinite(factor) or factor <= 0:
        raise ValueError(f"factor must be a positive finite number, got {factor!r}")
    if image.dim() != 3 or image.shape[-1] == 0 or image.shape[-2] == 0:
        raise ValueError(f"image must be [C, H, W] with H, W > 0, got {list(image.shape)}")
    h, w = image.shape[-2:]
    nh, nw = max(1, round(h * factor)), max(1, round(w * factor))
    out = F.interpolate(image[None].float(), size=(nh, nw), mode="bilinear", align_corners=False)[0]
    return out.to(image.dtype) if image.is_floating_point() else out, nh / h, nw / w


def _as_detections(out, where: str) -> dict:
    """A detector's output for one image as ``{"boxes" [N, 4], "scores" [N], "labels" [N]}``."""
    if isinstance(out, dict):
        missing = [k for k in ("boxes", "scores", "labels") if k not in out]
        if missing:
            raise TypeError(f"{where}: the detector returned a dict without {missing}; expected "
                            "{'boxes': [N, 4], 'scores': [N], 'labels': [N]} (torchvision's format)")
        boxes, scores, labels = out["boxes"], out["scores"], out["labels"]
    elif isinstance(out, (tuple, list)) and len(out) == 3:
        boxes, scores, labels = out
    else:
        raise TypeError(f"{where}: the detector must return (boxes [N, 4], scores [N], labels [N]) or a dict "
                        f"with those keys, got {type(out).__name__}")
    boxes = torch.as_tensor(boxes, dtype=torch.float32)
    scores, labels = torch.as_tensor(scores).reshape(-1), torch.as_tensor(labels).reshape(-1)
    if boxes.numel() == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.dim() != 2 or boxes.shape[1] != 4 or scores.shape[0] != boxes.shape[0] or labels.shape[0] != boxes.shape[0]:
        raise ValueError(f"{where}: boxes must be [N, 4] with N scores and N labels, got boxes "
                         f"{list(boxes.shape)}, scores {list(scores.shape)}, labels {list(labels.shape)}")
    bad = ~(torch.isfinite(boxes).all(1) & torch.isfinite(scores.float()))
    if bad.any():
        raise ValueError(f"{where}: the detector returned {int(bad.sum())} detection(s) with non-finite boxes or "
                         "scores; fix the detector (e.g. a diverged model) rather than let them be dropped")
    return {"boxes": boxes, "scores": scores, "labels": labels}


def _level_detector(detector) -> LevelDetector:
    for adapter in reversed(_ADAPTERS):
        runner = adapter(detector)
        if runner is not None:
            return runner
    if not callable(detector):
        raise TypeError(f"detector must be callable or a detection model scalekit knows, got {type(detector).__name__}")
    return lambda images: [detector(image) for image in images]


class Pyramid:
    """SNIP inference over pyramid levels, in one call.

    ``detect(detector, image)``: resize the image for each level, run the
    detector on it, map the boxes back to the original image, keep those whose
    size is in the level's valid range, and merge all levels per class with
    Gaussian Soft-NMS (SNIPER's test setting: sigma 0.55, at most 200
    detections per image).

    ``detector`` is either a torchvision detection model in eval mode (with
    :mod:`scalekit.detection` imported, as ``import scalekit`` does: each
    level's images reach the backbone at that level's size, up to the padding
    to a multiple of 32, and the images of one level run as one batch), a
    detector taught by :func:`register_detector_adapter`, or any callable
    ``detector(image [C, H, W]) -> (boxes [N, 4], scores [N], labels [N])``
    (or a dict with those keys) that handles sizes itself. Non-finite
    detections raise a ``ValueError``; they are never dropped silently.

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

    def _run(self, detector, images: Sequence[Tensor]) -> list[list[dict]]:
        """``[image][level]``: valid detections in original-image coordinates."""
        run = _level_detector(detector)
        for i, image in enumerate(images):
            if not isinstance(image, Tensor) or image.dim() != 3:
                shape = list(image.shape) if isinstance(image, Tensor) else type(image).__name__
                raise ValueError(f"images[{i}] must be a [C, H, W] tensor, got {shape}")
        out: list[list[dict]] = [[] for _ in images]
        for k, (spec, area) in enumerate(self.levels):
            resized = [resize_image(image, spec.factor(*image.shape[-2:])) for image in images]
            results = run([r[0] for r in resized])
            if len(results) != len(images):
                raise ValueError(f"level {k}: the detector returned {len(results)} results for {len(images)} images")
            for i, ((_, fy, fx), result) in enumerate(zip(resized, results)):
                d = _as_detections(result, f"level {k}, image {i}")
                boxes = d["boxes"] / torch.tensor([fx, fy, fx, fy], dtype=d["boxes"].dtype, device=d["boxes"].device)
                keep = area.valid_mask(boxes)
                out[i].append({"boxes": boxes[keep], "scores": d["scores"][keep], "labels": d["labels"][keep]})
        return out

    def detect_levels(self, detector, image: Tensor) -> list[dict]:
        """Per level, the valid detections of one ``[C, H, W]`` image in original-image coordinates."""
        if not isinstance(image, Tensor) or image.dim() != 3:
            raise ValueError(f"image must be [C, H, W], got {list(image.shape) if isinstance(image, Tensor) else image!r}")
        return self._run(detector, [image])[0]

    def merge(self, per_level: list[dict]) -> dict:
        """All levels' detections merged per class by Soft-NMS."""
        boxes = torch.cat([d["boxes"] for d in per_level])
        scores = torch.cat([d["scores"].to(torch.float32) for d in per_level])
        labels = torch.cat([d["labels"].to(torch.int64) for d in per_level])
        keep, kept_scores = batched_soft_nms(boxes, scores, labels, self.iou_threshold, self.sigma,
                                             self.score_threshold, self.method)
        keep, kept_scores = keep[: self.max_detections], kept_scores[: self.max_detections]
        return {"boxes": boxes[keep], "scores": kept_scores, "labels": labels[keep]}

    def detect(self, detector, images: Tensor | Sequence[Tensor]) -> dict | list[dict]:
        """SNIP inference: ``{"boxes", "scores", "labels"}`` in original-image coordinates,
        for one ``[C, H, W]`` image, or a list of them for a list of images."""
        if isinstance(images, Tensor):
            if images.dim() != 3:
                raise ValueError(f"image must be [C, H, W] (or a list of them), got {list(images.shape)}")
            return self.merge(self._run(detector, [images])[0])
        return [self.merge(levels) for levels in self._run(detector, list(images))]
