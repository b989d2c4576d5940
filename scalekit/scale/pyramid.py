"""SNIP inference: run any detector on every pyramid level, keep each level's
valid detections, merge with Soft-NMS (thesis §2.6.1, §3.4.4)."""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from scalekit._detector import LevelDetector, as_detections, level_detector, register_detector_adapter
from scalekit._image import as_float_image
from scalekit.ops import batched_soft_nms
from scalekit.progress import progress as _progress
from scalekit.scale.levels import SNIP_LEVELS, AreaRange, ScaleSpec

__all__ = ["Pyramid", "resize_image", "register_detector_adapter", "tune_ranges", "MAX_LEVEL_PIXELS"]

MAX_LEVEL_PIXELS = 10**8
"""Default bound on the pixels of one resized image (about 10,000 x 10,000: 1.2 GB
as a 3-channel float32 image, many times that inside a backbone). A level above
it is refused before anything is allocated; raise it with ``max_level_pixels``."""


def _positive_factor(factor, name: str = "factor") -> float:
    """``factor`` as a float; Python and numpy numbers (and 0-d tensors) are accepted."""
    if isinstance(factor, Tensor) and factor.numel() == 1 and factor.dtype != torch.bool and not factor.is_complex():
        factor = factor.item()
    if isinstance(factor, bool) or not isinstance(factor, numbers.Real):
        raise TypeError(f"{name} must be a positive finite number, got {type(factor).__name__} {factor!r}")
    value = float(factor)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {factor!r}")
    return value


def _resized_size(height: int, width: int, factor: float) -> tuple[int, int]:
    """The whole-pixel size of a ``height x width`` image resized by ``factor`` (at least 1 x 1)."""
    return max(1, round(height * factor)), max(1, round(width * factor))


def resize_image(image: Tensor, factor: float, *, max_pixels: int = MAX_LEVEL_PIXELS) -> tuple[Tensor, float, float]:
    """Bilinear resize of ``[C, H, W]`` by ``factor``; returns the image and the
    exact ``(y, x)`` factors after rounding the size to whole pixels.

    ``factor`` is any positive finite real number (Python, numpy or a 0-d
    tensor). A result of more than ``max_pixels`` pixels (:data:`MAX_LEVEL_PIXELS`,
    10⁸, by default) raises a ``ValueError`` before anything is allocated.
    Integer images come back as float (``uint8`` is not divided by 255 here:
    :class:`Pyramid` does that before resizing).

    Example:
        >>> import torch
        >>> from scalekit.scale import resize_image
        >>> image, fy, fx = resize_image(torch.rand(3, 100, 150), 1.5)
        >>> image.shape, fy, fx
        (torch.Size([3, 150, 225]), 1.5, 1.5)
    """
    factor = _positive_factor(factor)
    if not isinstance(image, Tensor) or image.dim() != 3 or image.shape[-1] == 0 or image.shape[-2] == 0:
        shape = list(image.shape) if isinstance(image, Tensor) else type(image).__name__
        raise ValueError(f"image must be [C, H, W] with H, W > 0, got {shape}")
    h, w = image.shape[-2:]
    nh, nw = _resized_size(h, w, factor)
    if float(nh) * float(nw) > max_pixels:
        raise ValueError(f"resizing a {h}x{w} image by {factor:g} would make it {nh}x{nw} "
                         f"({float(nh) * float(nw):.3g} pixels), "
                         f"above max_pixels={max_pixels:.3g}")
    out = F.interpolate(image[None].float(), size=(nh, nw), mode="bilinear", align_corners=False)[0]
    return out.to(image.dtype) if image.is_floating_point() else out, nh / h, nw / w


def _real(value, name: str) -> float:
    """A Python or numpy real number (or a 0-d tensor) as a float, for the op's own checks."""
    if isinstance(value, Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    return float(value)


class Pyramid:
    """SNIP inference over pyramid levels, in one call.

    ``detect(detector, image)``: resize the image for each level, run the
    detector on it, map the boxes back to the original image, keep those whose
    size is in the level's valid range, and merge all levels per class with
    Gaussian Soft-NMS (SNIPER's test setting: sigma 0.55, at most 200
    detections per image).

    ``detector`` is either a torchvision detection model in eval mode (found
    by its class, no import needed: each level's images reach the backbone at
    that level's size, up to the padding to a multiple of 32, and the images
    of one level run as one batch), a detector taught by
    :func:`register_detector_adapter`, or any callable
    ``detector(image [C, H, W]) -> (boxes [N, 4], scores [N], labels [N])``
    (or a dict with those keys) that handles sizes itself. Non-finite
    detections raise a ``ValueError``; they are never dropped silently. Boxes
    mapped back to the original image are clipped to it (as torchvision's
    detectors clip theirs to their input) before the valid range is applied.

    Images: a ``[C, H, W]`` tensor, a PIL image or a file path. Every detector
    receives float images in ``[0, 1]``, torchvision's convention: a ``uint8``
    tensor (what ``torchvision.io.read_image`` returns) is divided by 255, as
    ``torchvision.transforms.v2.functional.to_dtype(..., scale=True)`` does; a
    float tensor is passed as it is; other integer dtypes raise a
    ``TypeError``. (torchvision's detectors themselves refuse ``uint8``.)

    Every argument is checked here, before any detector runs; a level whose
    resized image would exceed ``max_level_pixels`` raises a ``ValueError``
    naming the level and the size, before the image is resized.

    Args:
        levels: ``(ScaleSpec, AreaRange)`` pairs (default: SNIP's test levels).
        sigma, iou_threshold, method: Soft-NMS parameters (see :func:`~scalekit.ops.soft_nms`);
            ``iou_threshold`` in ``[0, 1]``.
        score_threshold: detections below it are dropped (0.001, as SNIPER).
        max_detections: per image after merging, a positive int (200, as
            SNIPER), or ``None`` for all.
        max_level_pixels: the most pixels one resized image may have
            (:data:`MAX_LEVEL_PIXELS`, 10⁸).

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
                 max_detections: int | None = 200, max_level_pixels: int = MAX_LEVEL_PIXELS) -> None:
        if isinstance(levels, (str, bytes)) or not isinstance(levels, Iterable):
            raise TypeError(f"levels must be a sequence of (ScaleSpec, AreaRange) pairs, got {type(levels).__name__}")
        levels = tuple(levels)
        if len(levels) == 0:
            raise ValueError("levels must not be empty")
        for k, level in enumerate(levels):
            if not (isinstance(level, (tuple, list)) and len(level) == 2 and isinstance(level[0], ScaleSpec)
                    and isinstance(level[1], AreaRange)):
                raise TypeError(f"levels[{k}] must be a (ScaleSpec, AreaRange) pair, got {level!r}")
        self.levels = tuple((spec, area) for spec, area in levels)
        sigma, iou_threshold = _real(sigma, "sigma"), _real(iou_threshold, "iou_threshold")
        score_threshold = _real(score_threshold, "score_threshold")
        if not 0.0 <= iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
        # The Soft-NMS op checks its own arguments (method, sigma > 0, no NaN): run it once on
        # nothing so that a bad value fails here, not after the detector ran on every level.
        batched_soft_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), iou_threshold,
                         sigma, score_threshold, method)
        if max_detections is not None:
            if isinstance(max_detections, bool) or not isinstance(max_detections, numbers.Integral):
                raise TypeError(f"max_detections must be a positive int or None, got "
                                f"{type(max_detections).__name__} {max_detections!r}")
            if max_detections < 1:
                raise ValueError(f"max_detections must be >= 1 (or None for all), got {max_detections}")
            max_detections = int(max_detections)
        if isinstance(max_level_pixels, bool) or not isinstance(max_level_pixels, numbers.Real) \
                or not max_level_pixels >= 1:
            raise ValueError(f"max_level_pixels must be a number >= 1, got {max_level_pixels!r}")
        self.sigma, self.iou_threshold, self.method = sigma, iou_threshold, method
        self.score_threshold, self.max_detections = score_threshold, max_detections
        self.max_level_pixels = max_level_pixels

    def __repr__(self) -> str:
        return (f"Pyramid(levels={len(self.levels)}, sigma={self.sigma}, iou_threshold={self.iou_threshold}, "
                f"method={self.method!r}, score_threshold={self.score_threshold}, "
                f"max_detections={self.max_detections})")

    def level_sizes(self, height: int, width: int) -> list[tuple[float, int, int]]:
        """Per level, ``(factor, height, width)`` of an image of that size, checked
        against ``max_level_pixels`` (a ``ValueError`` names the first level above it)."""
        sizes = []
        for k, (spec, _) in enumerate(self.levels):
            factor = _positive_factor(spec.factor(height, width), f"level {k} ({spec})'s factor")
            nh, nw = _resized_size(height, width, factor)
            pixels = float(nh) * float(nw)  # a float: the product of two huge ints may not format as one
            if pixels > self.max_level_pixels:
                raise ValueError(
                    f"level {k} ({spec}) would resize the {height}x{width} image by {factor:g} to {nh}x{nw} "
                    f"({pixels:.3g} pixels, {pixels * 12:.3g} bytes as 3-channel float32), above "
                    f"max_level_pixels={self.max_level_pixels:.3g}; use a smaller level or raise max_level_pixels")
            sizes.append((factor, nh, nw))
        return sizes

    def _run(self, run: LevelDetector, images: Sequence[Tensor], first: int = 0) -> list[list[dict]]:
        """``[image][level]``: valid detections in original-image coordinates. ``first``
        is the index of ``images[0]`` in the caller's list, for messages."""
        factors = [self.level_sizes(*image.shape[-2:]) for image in images]  # all checked before any runs
        out: list[list[dict]] = [[] for _ in images]
        for k, (_, area) in enumerate(self.levels):
            resized = [resize_image(image, sizes[k][0], max_pixels=self.max_level_pixels)
                       for image, sizes in zip(images, factors)]
            results = run([r[0] for r in resized])
            if len(results) != len(images):
                raise ValueError(f"level {k}: the detector returned {len(results)} results for {len(images)} images")
            for i, ((_, fy, fx), result) in enumerate(zip(resized, results)):
                d = as_detections(result, f"level {k}, image {first + i}")
                boxes = d["boxes"] / torch.tensor([fx, fy, fx, fy], dtype=d["boxes"].dtype, device=d["boxes"].device)
                h, w = images[i].shape[-2:]  # clipped to the image, as torchvision's detectors clip theirs
                boxes = torch.stack([boxes[:, 0].clamp(0, w), boxes[:, 1].clamp(0, h),
                                     boxes[:, 2].clamp(0, w), boxes[:, 3].clamp(0, h)], 1)
                keep = area.valid_mask(boxes)
                out[i].append({"boxes": boxes[keep], "scores": d["scores"][keep], "labels": d["labels"][keep]})
        return out

    def detect_levels(self, detector, image) -> list[dict]:
        """Per level, the valid detections of one image (``[C, H, W]`` tensor, PIL
        image or path) in original-image coordinates."""
        return self._run(level_detector(detector), [as_float_image(image)])[0]

    def with_ranges(self, ranges: Sequence[AreaRange]) -> "Pyramid":
        """The same pyramid (scales, Soft-NMS, limits) with other test ranges, one :class:`AreaRange` per level."""
        ranges = tuple(ranges)
        if len(ranges) != len(self.levels) or not all(isinstance(r, AreaRange) for r in ranges):
            raise ValueError(f"ranges must be {len(self.levels)} AreaRange (one per level), got {ranges!r}")
        return Pyramid([(spec, r) for (spec, _), r in zip(self.levels, ranges)], sigma=self.sigma,
                       iou_threshold=self.iou_threshold, method=self.method, score_threshold=self.score_threshold,
                       max_detections=self.max_detections, max_level_pixels=self.max_level_pixels)

    def merge(self, per_level: list[dict]) -> dict:
        """All levels' detections merged per class by Soft-NMS."""
        boxes = torch.cat([d["boxes"] for d in per_level])
        scores = torch.cat([d["scores"].to(torch.float32) for d in per_level])
        labels = torch.cat([d["labels"].to(torch.int64) for d in per_level])
        keep, kept_scores = batched_soft_nms(boxes, scores, labels, self.iou_threshold, self.sigma,
                                             self.score_threshold, self.method)
        if self.max_detections is not None:
            keep, kept_scores = keep[: self.max_detections], kept_scores[: self.max_detections]
        return {"boxes": boxes[keep], "scores": kept_scores, "labels": labels[keep]}

    def _detect_many(self, run: LevelDetector, images: Iterable, batch_size: int | None):
        it, first = iter(images), 0
        while True:
            batch = list(itertools.islice(it, batch_size))
            if not batch:
                return
            tensors = [as_float_image(image, f"images[{first + j}]") for j, image in enumerate(batch)]
            for per_level in self._run(run, tensors, first):
                yield self.merge(per_level)
            first += len(batch)

    def detect(self, detector, images, *, batch_size: int | None = None, progress: bool = False) -> dict | list[dict]:
        """SNIP inference: ``{"boxes" [N, 4], "scores" [N], "labels" [N]}`` in
        original-image coordinates.

        ``images`` is one image (a ``[C, H, W]`` tensor, a PIL image or a file
        path; the result is one dict) or a list or other iterable of them (a
        list of dicts). Images of a list go through each level ``batch_size``
        at a time (default: all at once); only those are read and held at a
        time, so a dataset's file paths with ``batch_size=8`` run in bounded
        memory. ``progress=True`` shows :mod:`scalekit.progress`'s bar on
        stderr (``Pyramid.detect [####....] done/total``), updated after each batch.
        """
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral)
                                       or batch_size < 1):
            raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")
        run = level_detector(detector)
        if isinstance(images, (Tensor, str, bytes)) or not isinstance(images, Iterable) \
                or type(images).__module__ == "numpy":  # one image: a tensor, a path, a PIL image (not iterable)
            if isinstance(images, Tensor) and images.dim() == 4:
                raise ValueError(f"images must be one [C, H, W] image or a list of them, got a batch "
                                 f"{list(images.shape)}: pass list(images)")
            return self.merge(self._run(run, [as_float_image(images)])[0])
        total = len(images) if hasattr(images, "__len__") else None
        batch_size = None if batch_size is None else int(batch_size)
        return list(_progress(self._detect_many(run, images, batch_size), total=total, desc="Pyramid.detect",
                              enabled=progress))


def tune_ranges(pyramid: Pyramid, per_level: Sequence[Sequence[dict]], candidates: Sequence[Sequence[AreaRange]],
                score: Callable[[list[dict]], float]) -> tuple[Pyramid, list[float]]:
    """The test ranges that score best on a held-out split, the way the thesis chose
    SNIP's inference ranges on COCO's minival (§2.7.1: "the validity range for each
    resolution in RCN is obtained using the minival set").

    The detector runs once: ``per_level`` holds every level's detections with no
    range applied (``pyramid.with_ranges([AreaRange()] * L).detect_levels(...)``
    per image); each candidate then only filters and merges them, exactly as
    :meth:`Pyramid.detect` with those ranges would.

    Args:
        pyramid: the pyramid whose scales and Soft-NMS settings are kept.
        per_level: per image, per level, ``{"boxes", "scores", "labels"}`` in
            original-image pixels, unfiltered.
        candidates: range sets to try, each one :class:`AreaRange` per level.
        score: the merged detections of every image (in ``per_level``'s order)
            -> a number to maximise (e.g. COCO AP of the held-out split).

    Returns:
        ``(best, scores)``: the pyramid with the best candidate's ranges (the
        first of equal scores) and every candidate's score.

    Example:
        >>> import torch
        >>> from scalekit.scale import AreaRange, Pyramid, ScaleSpec, tune_ranges
        >>> pyr = Pyramid([(ScaleSpec.fixed(1.0), AreaRange()), (ScaleSpec.fixed(2.0), AreaRange())])
        >>> det = lambda boxes: {"boxes": torch.tensor(boxes), "scores": torch.ones(len(boxes)),
        ...                      "labels": torch.ones(len(boxes), dtype=torch.int64)}
        >>> # one image: the 1x level finds the 50-px object, the 2x level a spurious 10-px box
        >>> per_level = [[det([[0.0, 0, 50, 50]]), det([[60.0, 60, 70, 70]])]]
        >>> one_box = lambda merged: float(sum(len(m["boxes"]) == 1 for m in merged))  # the held-out "AP"
        >>> best, scores = tune_ranges(pyr, per_level, [[AreaRange(), AreaRange()],
        ...                                            [AreaRange(), AreaRange(32, float("inf"))]], one_box)
        >>> scores, best.levels[1][1]
        ([0.0, 1.0], AreaRange(lo=32.0, hi=inf, rpn=None))
    """
    candidates = [tuple(c) for c in candidates]
    if not candidates:
        raise ValueError("candidates must hold at least one range set")
    pyramids = [pyramid.with_ranges(c) for c in candidates]
    checked = []
    for i, levels in enumerate(per_level):
        if len(levels) != len(pyramid.levels):
            raise ValueError(f"per_level[{i}] must have one entry per level ({len(pyramid.levels)}), got {len(levels)}")
        try:  # what Pyramid.detect refuses is refused here too: nothing is dropped silently
            checked.append([as_detections(d, f"per_level[{i}][{k}]") for k, d in enumerate(levels)])
        except TypeError as exc:
            raise ValueError(str(exc)) from None
    per_level = checked
    scores = []
    for candidate in pyramids:
        merged = []
        for levels in per_level:
            kept = []
            for d, (_, area) in zip(levels, candidate.levels):
                keep = area.valid_mask(d["boxes"])
                kept.append({k: d[k][keep] for k in ("boxes", "scores", "labels")})
            merged.append(candidate.merge(kept))
        scores.append(float(score(merged)))
    best = max(range(len(scores)), key=lambda k: (scores[k], -k))
    return pyramids[best], scores
