"""Recursive AutoFocus inference: the coarsest scale on the whole image, each
finer scale only inside the FocusChips of the scale before (AutoFocus, Najibi,
Singh and Davis, ICCV 2019, §4.2-4.3). Depends on :mod:`scalekit.scale` (levels,
valid ranges, resizing, and :class:`~scalekit.scale.Pyramid`'s Soft-NMS merge)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from scalekit._args import integer, real
from scalekit._detector import as_detections, level_detector
from scalekit._image import as_float_image
from scalekit.autofocus.chips import focus_chips
from scalekit.autofocus.labels import _image_size
from scalekit.boxes import _check_boxes
from scalekit.scale.levels import AreaRange, ScaleSpec
from scalekit.scale.pyramid import MAX_LEVEL_PIXELS, Pyramid, resize_image

__all__ = ["AutoFocus", "AUTOFOCUS_LEVELS", "near_chip_border"]

# The released AutoFocus test setting (SNIPER's sniper_res101_e2e_autofocus.yml), coarsest first:
# (shorter side, longer side at most) and each scale's valid range in original-image pixels.
AUTOFOCUS_LEVELS = (
    (ScaleSpec.shorter_side(480, 512), AreaRange(75, math.inf)),
    (ScaleSpec.shorter_side(800, 1280), AreaRange(32, 180)),
    (ScaleSpec.shorter_side(1400, 2000), AreaRange(0, 75)),
)

# Detectors scalekit runs without being told, found by where their class is defined
# (module prefix, adapter's module, its name); the module is imported only when one arrives.
_KNOWN_ADAPTERS = (("scalekit.detection.", "scalekit.detection.focus", "focus_adapter"),)

FocusRunner = Callable[[list[Tensor]], list]


def near_chip_border(boxes: Tensor, chip, image_size, border: float = 10.0) -> Tensor:
    """Which boxes have an edge within ``border`` pixels of an *interior* edge of ``chip``.

    An object cut by a chip's edge is detected there as a smaller, wrong box;
    the released AutoFocus code drops every detection whose left, top, right or
    bottom edge lies closer than 10 pixels (original-image pixels) to the same
    edge of its chip — unless that chip edge is the image's own edge, where
    nothing was cut.

    Args:
        boxes: ``[N, 4]`` float boxes in original-image pixels.
        chip: ``(x1, y1, x2, y2)`` of the chip, the same pixels.
        image_size: ``(H, W)`` of the original image.
        border: the distance, in pixels (10).

    Returns:
        ``[N]`` bool, True for boxes to drop.

    Example:
        >>> import torch
        >>> boxes = torch.tensor([[102.0, 150, 130, 180], [150, 150, 170, 170], [0, 0, 20, 20]])
        >>> near_chip_border(boxes, (100, 0, 300, 200), (400, 400))  # the chip's left edge is inside the image
        tensor([ True, False, False])
    """
    _check_boxes(boxes, "boxes")
    h, w = _image_size(image_size)
    border = real("border", border, minimum=0.0)
    if isinstance(chip, Tensor):
        chip = chip.tolist()
    if isinstance(chip, (str, bytes)) or not hasattr(chip, "__len__") or len(chip) != 4:
        raise ValueError(f"chip must be (x1, y1, x2, y2), got {chip!r}")
    cx1, cy1, cx2, cy2 = (real("chip", v) for v in chip)
    drop = torch.zeros(boxes.shape[0], dtype=torch.bool, device=boxes.device)
    for column, edge, interior in ((0, cx1, cx1 > 0), (1, cy1, cy1 > 0), (2, cx2, cx2 < w), (3, cy2, cy2 < h)):
        if interior:
            drop |= (boxes[:, column] - edge).abs() < border
    return drop


def _runner(detector) -> FocusRunner:
    return level_detector(detector, _KNOWN_ADAPTERS, registered=False,
                          expected="a scalekit.detection.FocusDetector or a callable "
                                   "image [C, H, W] -> {'boxes', 'scores', 'labels', 'focus'}")


def _per_level(values, name: str, n: int, check) -> tuple:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(f"{name} must be a sequence with one value per transition between levels ({n}), "
                        f"got {type(values).__name__}")
    if len(values) != n:
        raise ValueError(f"{name} must hold one value per transition between levels ({n} for {n + 1} levels), "
                         f"got {len(values)}")
    return tuple(check(f"{name}[{i}]", v) for i, v in enumerate(values))


def _crop_bounds(boxes: Tensor, parent: tuple[int, int, int, int]) -> list[tuple[int, int, int, int]]:
    """Whole-pixel crops covering ``[K, 4]`` boxes, kept inside the parent crop."""
    px1, py1, px2, py2 = parent
    out = []
    for x1, y1, x2, y2 in boxes.tolist():
        x1, y1 = max(px1, math.floor(x1)), max(py1, math.floor(y1))
        x2, y2 = min(px2, math.ceil(x2)), min(py2, math.ceil(y2))
        if x2 > x1 and y2 > y1:
            out.append((x1, y1, x2, y2))
    return out


class AutoFocus:
    """AutoFocus inference over a pyramid, coarse to fine, in one call.

    ``detect(detector, image)``:

    1. the coarsest level resizes the whole image; the detector returns its
       detections and a focus map (the probability of small objects per cell,
       :class:`~scalekit.autofocus.FocusHead`);
    2. :func:`~scalekit.autofocus.focus_chips` turns the map into FocusChips,
       mapped to original-image pixels (whole pixels, inside the chip they came from);
    3. each finer level crops *only* those chips from the original image,
       resizes each crop by the level's factor for the whole image, and runs
       the detector on the crops; their focus maps give the next level's chips;
    4. every level keeps the detections inside its valid range
       (:meth:`AreaRange.valid_mask <scalekit.scale.AreaRange.valid_mask>`, in
       original-image pixels) and, in chips, drops those within ``border``
       pixels of an interior chip edge (:func:`near_chip_border`);
    5. all levels merge with :meth:`Pyramid.merge <scalekit.scale.Pyramid.merge>`:
       per-class Gaussian Soft-NMS, sigma 0.55, at most 200 detections.

    The defaults are the released test setting (:data:`AUTOFOCUS_LEVELS`:
    shorter side 480 / 800 / 1400, longer at most 512 / 1280 / 2000; valid
    ranges [75, inf), [32, 180), [0, 75)); chips from the coarsest level with
    threshold 0.02, dilation 3, minimum 16 cells, from the middle level with
    0.2, 3 and 20 cells. The original's ranges are ``lo < size <= hi``;
    :class:`~scalekit.scale.AreaRange` is ``lo <= size < hi``.

    ``detector`` is a :class:`scalekit.detection.FocusDetector` in eval mode
    (found by its class; each crop reaches its backbone at its own size, the
    crops of a level run as a batch) or any callable ``detector(image [C, H, W])
    -> {"boxes" [N, 4], "scores" [N], "labels" [N], "focus" [h, w]}`` whose
    boxes are in the given image's pixels and whose focus map has one cell per
    ``stride x stride`` pixels of it (``h >= ceil(H / stride)``; extra padded
    cells are cut).

    The result is the merged detections plus the report: ``"chips"``, per
    level the ``[K, 4]`` regions run, in original-image pixels (the whole image
    at the coarsest level), and ``"pixel_fraction"``, per level the pixels run
    over the pixels of the whole image at that level (1.0 at the coarsest; the
    original prints the same ratio for the finer levels).

    Args:
        levels: ``(ScaleSpec, AreaRange)`` pairs, coarsest first.
        thresholds, dilations, min_chips: :func:`~scalekit.autofocus.focus_chips`'s
            settings for each transition (``len(levels) - 1`` each).
        stride: pixels per cell of the focus maps (16).
        border: pixels from an interior chip edge within which detections are dropped (10).
        sigma, iou_threshold, method, score_threshold, max_detections, max_level_pixels:
            the merge and the bound of :class:`~scalekit.scale.Pyramid`.

    Example:
        >>> import torch
        >>> from scalekit.autofocus import AutoFocus
        >>> seen = []
        >>> def detector(image):  # no detections; focus on the top-left 64 x 64 pixels of whatever it sees
        ...     seen.append(tuple(image.shape[-2:]))
        ...     focus = torch.zeros((image.shape[-2] + 15) // 16, (image.shape[-1] + 15) // 16)
        ...     focus[:4, :4] = 1.0
        ...     return {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0),
        ...             "labels": torch.zeros(0, dtype=torch.long), "focus": focus}
        >>> out = AutoFocus().detect(detector, torch.rand(3, 480, 640))
        >>> seen  # the whole image at 384 x 512, then one 16-cell chip at 800 px, one 20-cell chip at 1400 px
        [(384, 512), (533, 533), (563, 563)]
        >>> [c.tolist() for c in out["chips"][1:]], [round(f, 3) for f in out["pixel_fraction"]]
        ([[[0.0, 0.0, 320.0, 320.0]], [[0.0, 0.0, 193.0, 193.0]]], [1.0, 0.333, 0.121])
    """

    def __init__(self, levels: Sequence[tuple[ScaleSpec, AreaRange]] = AUTOFOCUS_LEVELS, *,
                 thresholds: Sequence[float] = (0.02, 0.2), dilations: Sequence[int] = (3, 3),
                 min_chips: Sequence[int] = (16, 20), stride: int = 16, border: float = 10.0, sigma: float = 0.55,
                 iou_threshold: float = 0.3, method: str = "gaussian", score_threshold: float = 0.001,
                 max_detections: int | None = 200, max_level_pixels: int = MAX_LEVEL_PIXELS) -> None:
        # Pyramid checks the levels and the merge settings, and merges: one place for both.
        self.pyramid = Pyramid(levels, sigma=sigma, iou_threshold=iou_threshold, method=method,
                               score_threshold=score_threshold, max_detections=max_detections,
                               max_level_pixels=max_level_pixels)
        self.levels = self.pyramid.levels
        n = len(self.levels) - 1
        self.thresholds = _per_level(thresholds, "thresholds", n, lambda name, v: real(name, v))
        self.dilations = _per_level(dilations, "dilations", n, lambda name, v: integer(name, v, minimum=1))
        self.min_chips = _per_level(min_chips, "min_chips", n, lambda name, v: integer(name, v, minimum=1))
        self.stride = integer("stride", stride, minimum=1)
        self.border = real("border", border, minimum=0.0)

    def __repr__(self) -> str:
        return (f"AutoFocus(levels={len(self.levels)}, thresholds={self.thresholds}, dilations={self.dilations}, "
                f"min_chips={self.min_chips}, stride={self.stride}, border={self.border}, merge={self.pyramid!r})")

    def _focus_map(self, result, where: str) -> Tensor:
        focus = result.get("focus") if isinstance(result, dict) else None
        if not isinstance(focus, Tensor):
            raise TypeError(f"{where}: the detector must return a dict with a 'focus' map [h, w] (the probability of "
                            f"focus per {self.stride}-pixel cell) beside 'boxes', 'scores' and 'labels', got "
                            f"{type(focus).__name__ if isinstance(result, dict) else type(result).__name__}")
        if focus.dim() == 3 and focus.shape[0] == 1:
            focus = focus[0]
        return focus

    def detect(self, detector, image, *, batch_size: int | None = None) -> dict:
        """AutoFocus inference on one image (a ``[C, H, W]`` tensor, a PIL image or a path).

        Returns:
            ``{"boxes" [N, 4], "scores" [N], "labels" [N]}`` in original-image
            pixels, plus ``"chips"`` (per level, ``[K, 4]`` float32) and
            ``"pixel_fraction"`` (per level, a float).

        ``batch_size``: crops per detector call (default: all crops of a level at once).
        """
        if batch_size is not None:
            batch_size = integer("batch_size", batch_size, minimum=1)
        run = _runner(detector)
        if getattr(run, "stride", self.stride) != self.stride:
            raise ValueError(f"the detector's focus maps have stride {run.stride}, AutoFocus was made with "
                             f"stride={self.stride}; make them equal")
        if isinstance(image, Tensor) and image.dim() == 4:
            raise ValueError(f"image must be one [C, H, W] image, got a batch {list(image.shape)}: "
                             "call detect per image")
        image = as_float_image(image)
        height, width = image.shape[-2:]
        sizes = self.pyramid.level_sizes(height, width)  # every level checked before anything runs
        crops = [(0, 0, width, height)]
        per_level, chips, fractions = [], [], []
        for k, ((_, area), (factor, level_h, level_w)) in enumerate(zip(self.levels, sizes)):
            last = k == len(self.levels) - 1
            chips.append(torch.tensor(crops, dtype=torch.float32).reshape(-1, 4))
            resized = [resize_image(image[:, y1:y2, x1:x2], factor, max_pixels=self.pyramid.max_level_pixels)
                       for x1, y1, x2, y2 in crops]
            fractions.append(sum(r[0].shape[-2] * r[0].shape[-1] for r in resized) / (level_h * level_w))
            results: list = []
            step = batch_size or max(1, len(resized))
            for i in range(0, len(resized), step):
                batch = [r[0] for r in resized[i:i + step]]
                out = run(batch)
                if len(out) != len(batch):
                    raise ValueError(f"level {k}: the detector returned {len(out)} results for {len(batch)} images")
                results.extend(out)
            kept, next_crops = [], []
            for j, (crop, (chip_image, fy, fx), result) in enumerate(zip(crops, resized, results)):
                where = f"level {k}, chip {j}"
                d = as_detections(result, where)
                x1, y1, x2, y2 = crop
                boxes = d["boxes"]
                scale = torch.tensor([fx, fy, fx, fy], dtype=boxes.dtype, device=boxes.device)
                offset = torch.tensor([x1, y1, x1, y1], dtype=boxes.dtype, device=boxes.device)
                boxes = boxes / scale + offset
                boxes = torch.stack([boxes[:, 0].clamp(x1, x2), boxes[:, 1].clamp(y1, y2),
                                     boxes[:, 2].clamp(x1, x2), boxes[:, 3].clamp(y1, y2)], 1)
                keep = area.valid_mask(boxes) & ~near_chip_border(boxes, crop, (height, width), self.border)
                kept.append({"boxes": boxes[keep], "scores": d["scores"][keep], "labels": d["labels"][keep]})
                if not last:
                    focus = self._focus_map(result, where)
                    found = focus_chips(focus, tuple(chip_image.shape[-2:]), threshold=self.thresholds[k],
                                        dilation=self.dilations[k], min_chip=self.min_chips[k], stride=self.stride)
                    found = found.cpu() / torch.tensor([fx, fy, fx, fy]) + torch.tensor([x1, y1, x1, y1],
                                                                                        dtype=torch.float32)
                    next_crops.extend(_crop_bounds(found, crop))
            if kept:
                per_level.append({key: torch.cat([d[key] for d in kept]) for key in ("boxes", "scores", "labels")})
            crops = next_crops
        merged = self.pyramid.merge(per_level) if per_level else {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0),
                                                                  "labels": torch.zeros(0, dtype=torch.int64)}
        return {**merged, "chips": chips, "pixel_fraction": fractions}
