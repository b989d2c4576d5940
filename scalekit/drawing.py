"""Pictures of detections, ground truth, ignore regions and chips on an image:
one drawing place for the library, built on ``torchvision.utils.draw_bounding_boxes``
(imported when a picture is drawn; it needs scalekit's ``detection`` extra)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

import torch
from torch import Tensor

from scalekit._image import as_float_image

__all__ = ["draw_detections", "DETECTION_COLOURS", "GROUND_TRUTH_COLOUR", "IGNORE_COLOUR", "CHIP_COLOURS"]

DETECTION_COLOURS = ((255, 48, 48), (48, 255, 48), (48, 128, 255), (255, 255, 48), (255, 48, 255), (48, 255, 255))
"""One colour per label (``label % 6``)."""
GROUND_TRUTH_COLOUR = (255, 255, 255)
IGNORE_COLOUR = (255, 140, 0)
"""Ignore regions: outlined and hatched with diagonal lines in this colour, the picture left visible between them."""
CHIP_COLOURS = ((230, 25, 75), (60, 180, 75), (0, 130, 200), (145, 30, 180), (128, 128, 0))
"""One colour per chip level (``level % 5``); positive chips are drawn thick, negative ones thin."""


def _boxes(boxes, name: str) -> Tensor:
    if not isinstance(boxes, Tensor):
        try:
            boxes = torch.as_tensor(boxes, dtype=torch.float32)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(f"{name} must be an [N, 4] tensor of (x1, y1, x2, y2) boxes, got {type(boxes).__name__}") \
                from exc
    boxes = boxes.detach().cpu()
    if boxes.numel() == 0:
        return boxes.reshape(0, 4).float()
    if boxes.dim() != 2 or boxes.shape[1] != 4 or boxes.is_complex() or boxes.dtype == torch.bool:
        raise ValueError(f"{name} must be an [N, 4] tensor of (x1, y1, x2, y2) boxes, got {boxes.dtype} "
                         f"{list(boxes.shape)}")
    boxes = boxes.double()
    bad = ~torch.isfinite(boxes).all(1)
    if bad.any():
        i = int(bad.nonzero()[0])
        raise ValueError(f"{name}[{i}] is not finite: {boxes[i].tolist()}")
    reversed_ = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if reversed_.any():
        i = int(reversed_.nonzero()[0])
        raise ValueError(f"{name}[{i}] = {boxes[i].tolist()} has x2 < x1 or y2 < y1; boxes are (x1, y1, x2, y2) "
                         "(xywh boxes: torchvision.ops.box_convert(boxes, 'xywh', 'xyxy'))")
    return boxes


def _name(label: int, class_names) -> str:
    if class_names is None:
        return str(label)
    if isinstance(class_names, Mapping):
        return str(class_names.get(label, label))
    return str(class_names[label - 1]) if 1 <= label <= len(class_names) else str(label)


def _hatch(canvas: Tensor, boxes: Tensor, colour, spacing: int, thickness: int) -> None:
    """Diagonal lines (``x + y`` in steps of ``spacing``) inside every box, in place on ``[3, H, W]`` uint8."""
    h, w = canvas.shape[-2:]
    ys, xs = torch.arange(h).view(-1, 1), torch.arange(w).view(1, -1)
    lines = (xs + ys) % spacing < thickness
    mask = torch.zeros(h, w, dtype=torch.bool)
    for x1, y1, x2, y2 in boxes.tolist():  # pixels whose centre lies in the box
        c0, c1 = max(0, math.ceil(x1 - 0.5)), min(w, math.ceil(x2 - 0.5))
        r0, r1 = max(0, math.ceil(y1 - 0.5)), min(h, math.ceil(y2 - 0.5))
        if c1 > c0 and r1 > r0:
            mask[r0:r1, c0:c1] = True
    mask &= lines
    canvas[:, mask] = torch.tensor(colour, dtype=torch.uint8).view(3, 1)


def draw_detections(image, detections: Mapping | None = None, *, ground_truth=None, ignore_boxes=None,
                    chips=None, class_names=None, score_threshold: float = 0.3, max_detections: int = 100,
                    width: int = 2, path=None) -> Tensor:
    """Draw detections (labels and scores), ground truth, ignore regions and chips on an image.

    Drawn bottom to top: chips (one colour per level, :data:`CHIP_COLOURS`;
    positive chips ``width + 1`` wide, negative ones 1), ignore regions
    (outlined and hatched in :data:`IGNORE_COLOUR`, the picture visible
    between the lines), ground truth (white, 1 pixel) and detections (one
    colour per label, :data:`DETECTION_COLOURS`, with ``"name 0.87"`` above
    each box). Boxes may reach outside the image (clipped when drawn); NaN,
    infinite or reversed boxes raise a ``ValueError`` naming the argument.

    Args:
        image: ``[3, H, W]`` or ``[1, H, W]`` tensor (float in ``[0, 1]``, clamped,
            or ``uint8``), a PIL image or an image file path.
        detections: ``{"boxes" [N, 4], "scores" [N] (optional), "labels" [N]
            (optional)}``, e.g. :meth:`~scalekit.scale.Pyramid.detect`'s
            result; detections scoring below ``score_threshold`` are left out
            and at most ``max_detections`` of the highest are drawn.
        ground_truth: ``[G, 4]`` boxes (or a target dict: its ``"boxes"``, and
            its ``"ignore_boxes"`` unless ``ignore_boxes`` is given).
        ignore_boxes: ``[I, 4]`` regions a detector neither learns nor is
            scored on (crowd boxes, SNIP's invalid objects).
        chips: :class:`~scalekit.chips.Chip` objects (their ``box``, ``level``
            and ``kind``) or an ``[K, 4]`` tensor of chip boxes.
        class_names: ``class_names[label - 1]`` names a label (as
            :attr:`~scalekit.datasets.CocoDetection.class_names`), or a dict
            ``{label: name}``; default: the label number.
        width: line width of detections, in pixels.
        path: where to save the picture (format from the extension, e.g. ``.png``).

    Returns:
        ``[3, H, W]`` uint8 tensor: the picture.

    Example:
        >>> import torch
        >>> from scalekit.drawing import draw_detections, IGNORE_COLOUR
        >>> picture = draw_detections(torch.zeros(3, 60, 80),
        ...                           {"boxes": torch.tensor([[10.0, 10, 40, 40]]), "scores": torch.tensor([0.9]),
        ...                            "labels": torch.tensor([1])},
        ...                           ignore_boxes=torch.tensor([[50.0, 5, 75, 55]]), class_names=["person"])
        >>> picture.dtype, picture.shape
        (torch.uint8, torch.Size([3, 60, 80]))
        >>> picture[:, 30, 60].tolist() == list(IGNORE_COLOUR)  # a hatch line: (60 + 30) % 6 == 0
        True
    """
    try:
        from torchvision.utils import draw_bounding_boxes
    except Exception as exc:
        raise ImportError(f"draw_detections needs torchvision ({type(exc).__name__}: {exc}); install scalekit's "
                          "'detection' extra: pip install 'torch-scalekit[detection]'") from exc
    picture = as_float_image(image)
    if picture.shape[0] == 1:
        picture = picture.expand(3, -1, -1)
    if picture.shape[0] != 3:
        raise ValueError(f"image must have 1 or 3 channels, got {picture.shape[0]} ({list(picture.shape)})")
    if isinstance(score_threshold, bool) or not isinstance(score_threshold, (int, float)) \
            or math.isnan(float(score_threshold)):
        raise ValueError(f"score_threshold must be a number, got {score_threshold!r}")
    for value, what in ((max_detections, "max_detections"), (width, "width")):
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if what == "max_detections" else 1):
            raise ValueError(f"{what} must be an int >= {0 if what == 'max_detections' else 1}, got {value!r}")
    canvas = (picture.detach().float().cpu().nan_to_num(0.0).clamp(0, 1) * 255).round().to(torch.uint8).contiguous()
    h, w = canvas.shape[-2:]
    # Off-image parts are not drawn: clamp to one pixel outside, which keeps PIL's integers small.
    limits = torch.tensor([w, h, w, h], dtype=torch.float64)
    clip = lambda b: torch.minimum(b.clamp(min=-1.0), limits)  # noqa: E731

    if isinstance(ground_truth, Mapping):
        if ignore_boxes is None:
            ignore_boxes = ground_truth.get("ignore_boxes")
        ground_truth = ground_truth.get("boxes")

    if chips is not None:
        if isinstance(chips, Tensor):
            chip_boxes, levels, kinds = _boxes(chips, "chips"), [0] * len(chips), ["pos"] * len(chips)
        else:
            chips = list(chips)
            if not all(hasattr(c, "box") for c in chips):
                raise TypeError("chips must be Chip objects (with .box, .level, .kind) or an [K, 4] tensor of boxes")
            chip_boxes = _boxes(torch.stack([torch.as_tensor(c.box, dtype=torch.float64) for c in chips])
                                if chips else torch.zeros(0, 4), "chips")
            levels = [int(getattr(c, "level", 0)) for c in chips]
            kinds = [getattr(c, "kind", "pos") for c in chips]
        for kind, line in (("neg", 1), ("pos", width + 1)):  # negatives under positives
            idx = [i for i, k in enumerate(kinds) if (k == "neg") == (kind == "neg")]
            if idx:
                canvas = draw_bounding_boxes(canvas, clip(chip_boxes[idx]), width=line,
                                             colors=[CHIP_COLOURS[levels[i] % len(CHIP_COLOURS)] for i in idx])

    if ignore_boxes is not None:
        ignore = _boxes(ignore_boxes, "ignore_boxes")
        if len(ignore):
            _hatch(canvas, ignore, IGNORE_COLOUR, spacing=6, thickness=2)
            canvas = draw_bounding_boxes(canvas, clip(ignore), colors=IGNORE_COLOUR, width=1)

    if ground_truth is not None:
        gt = _boxes(ground_truth, "ground_truth")
        if len(gt):
            canvas = draw_bounding_boxes(canvas, clip(gt), colors=GROUND_TRUTH_COLOUR, width=1)

    if detections is not None:
        if not isinstance(detections, Mapping) or "boxes" not in detections:
            raise TypeError("detections must be a dict with 'boxes' [N, 4] (and 'scores' [N], 'labels' [N]), got "
                            f"{type(detections).__name__}")
        boxes = _boxes(detections["boxes"], "detections['boxes']")
        n = len(boxes)
        scores = detections.get("scores")
        labels = detections.get("labels")
        scores = None if scores is None else torch.as_tensor(scores).detach().cpu().reshape(-1).double()
        labels = None if labels is None else torch.as_tensor(labels).detach().cpu().reshape(-1).long()
        for value, what in ((scores, "scores"), (labels, "labels")):
            if value is not None and len(value) != n:
                raise ValueError(f"detections['{what}'] must have one entry per box ({n}), got {len(value)}")
        order = torch.arange(n)
        if scores is not None:
            if torch.isnan(scores).any():
                raise ValueError("detections['scores'] holds NaN")
            order = torch.argsort(scores, descending=True, stable=True)
            order = order[scores[order] >= score_threshold]
        order = order[:max_detections].tolist()
        if order:
            texts, colours = [], []
            for i in order:
                label = int(labels[i]) if labels is not None else 0
                text = _name(label, class_names) if labels is not None else ""
                if scores is not None:
                    text = f"{text} {float(scores[i]):.2f}".strip()
                texts.append(text)
                colours.append(DETECTION_COLOURS[label % len(DETECTION_COLOURS)])
            canvas = draw_bounding_boxes(canvas, clip(boxes[order]), labels=texts, colors=colours, width=width)

    if path is not None:
        from PIL import Image

        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        Image.fromarray(canvas.permute(1, 2, 0).numpy()).save(path)
    return canvas
