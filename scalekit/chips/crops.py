"""Inside a chip: ground truth cropped and mapped to chip pixels, the chip's
image, statistics and pictures (thesis §3.3.2-3.3.5)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from scalekit.chips.generator import Chip, ChipGenerator
from scalekit.scale.levels import AreaRange

__all__ = ["chip_targets", "crop_chip", "chip_stats", "draw_chips"]


def chip_targets(chip: Chip, target: dict, area: AreaRange | None = None, *, min_size: float = 0.0) -> dict:
    """An image's targets inside a window at a level: the one mapping of SNIP and SNIPER.

    Every box is clipped to the window (``chip.box``, original-image pixels),
    shifted to its corner and scaled by ``chip.scale`` to the window's pixels.
    The cut-off rule, one for both systems: a box belongs to the window when
    its clipped part is at least ``min_size`` wide and tall (and not empty);
    partly visible boxes are kept cropped (thesis §3.3.2: "Ground-truth
    instances which have a partial overlap with a chip are cropped. All the
    cropped ground-truth boxes (valid or invalid) are retained in the chip").
    It is an object (``"boxes"``/``"labels"``) when its *uncropped* size in
    original-image pixels lies in the RPN range of ``area``
    (:attr:`AreaRange.rpn_range`, the classifier's range unless set), else an
    ``"ignore_boxes"`` entry (anchors near it are ignored, §2.6.1). The
    image's own ``target["ignore_boxes"]`` (crowd regions) are mapped the
    same way and stay ignore boxes. With ``area``, ``"valid_range"`` carries
    the classifier's range in window pixels (``[lo, hi] * chip.scale``): a
    detector made with :func:`scalekit.detection.honour_ignore_boxes`, or a
    :mod:`scalekit.heads` head, ignores proposals whose own size falls
    outside it (§3.3.4: "proposals which do not fall in R^i are ignored").
    ``area=None`` (multi-scale training): every box is an object.

    Args:
        chip: the window (a SNIPER chip, a SNIP window, or a whole resized image).
        target: ``{"boxes": [N, 4], "labels": [N]}`` in original-image pixels,
            optionally ``"ignore_boxes": [I, 4]``.
        area: the level's valid range, or ``None``.
        min_size: drop boxes whose cropped width or height, in window pixels, is
            below it (SNIPER's released code drops boxes under 10 px).

    Returns:
        a dict: ``"boxes"`` ``[M, 4]`` float32 in window pixels, ``"labels"`` ``[M]``,
        ``"ignore_boxes"`` ``[J, 4]``, ``"index"`` ``[M]`` into ``target["boxes"]``, and
        with ``area`` ``"valid_range"`` ``[2]`` float32.

    Example:
        >>> import torch
        >>> from scalekit.chips import Chip, chip_targets
        >>> from scalekit.scale import AreaRange
        >>> chip = Chip(level=0, scale=3.0, box=torch.tensor([0.0, 0, 512 / 3, 512 / 3]))
        >>> target = {"boxes": torch.tensor([[10.0, 10, 40, 40], [150, 150, 300, 300]]), "labels": torch.tensor([1, 2])}
        >>> t = chip_targets(chip, target, AreaRange(0, 80))
        >>> t["boxes"], t["ignore_boxes"], t["valid_range"]
        (tensor([[ 30.,  30., 120., 120.]]), tensor([[450., 450., 512., 512.]]), tensor([  0., 240.]))
    """
    boxes = _target_boxes(target["boxes"], "target['boxes']")
    labels = torch.as_tensor(target["labels"]).reshape(-1)
    if labels.shape[0] != boxes.shape[0]:
        raise ValueError(f"target['labels'] must hold one label per box ({boxes.shape[0]}), got {labels.shape[0]}")
    crowd = target.get("ignore_boxes")
    crowd = torch.zeros(0, 4) if crowd is None else _target_boxes(crowd, "target['ignore_boxes']")
    mapped, keep = _into_window(boxes, chip, min_size)
    crowd_mapped, crowd_keep = _into_window(crowd, chip, min_size)
    valid = keep if area is None else keep & area.rpn_range.valid_mask(boxes)
    idx = valid.nonzero().flatten()
    out = {"boxes": mapped[idx], "labels": labels[idx],
           "ignore_boxes": torch.cat([mapped[keep & ~valid], crowd_mapped[crowd_keep]]), "index": idx}
    if area is not None:
        out["valid_range"] = torch.tensor([area.lo, area.hi], dtype=torch.float32) * float(chip.scale)
    return out


def _target_boxes(boxes, name: str) -> Tensor:
    """``[N, 4]`` float32 boxes (an empty tensor of any shape is no box), or a clear error naming ``name``."""
    t = torch.as_tensor(boxes)
    if t.numel() == 0:
        return torch.zeros(0, 4)
    if t.ndim != 2 or t.shape[1] != 4 or t.dtype == torch.bool:
        raise ValueError(f"{name} must be [N, 4] numbers (x1, y1, x2, y2), got {t.dtype} {list(t.shape)}")
    return t.to(torch.float32)


def _into_window(boxes: Tensor, chip: Chip, min_size: float) -> tuple[Tensor, Tensor]:
    """Boxes clipped to ``chip.box``, in window pixels, and whether each keeps at least ``min_size`` (and > 0) per side."""
    x1, y1, x2, y2 = chip.box.tolist()
    lo, hi = torch.tensor([x1, y1, x1, y1]), torch.tensor([x2, y2, x2, y2])
    mapped = (boxes.clamp(min=lo, max=hi) - lo) * float(chip.scale)
    wh = mapped[:, 2:] - mapped[:, :2]
    return mapped, (wh > 0).all(1) & (wh >= min_size).all(1)


def crop_chip(image: Tensor, target: dict, chip: Chip, chip_size: int = 512, levels=None, *,
              min_size: float = 0.0) -> tuple[Tensor, dict]:
    """The chip's pixels (``[C, chip_size, chip_size]``, zero past the image) and its targets.

    Only the part of the window inside the image is resized (bilinear), so the
    cost is that of the chip, not of the resized image.

    Args:
        image: ``[C, H, W]``.
        target: ``{"boxes": [N, 4], "labels": [N]}`` in original-image pixels.
        chip: the chip.
        chip_size: the chip's side in pixels.
        levels: the generator's levels (default: SNIPER's).
        min_size: see :func:`chip_targets`.

    Returns:
        ``(chip_image, chip_target)``; ``chip_target`` as :func:`chip_targets`
        with the range of the chip's level.

    Example:
        >>> import torch
        >>> from scalekit.chips import Chip, crop_chip
        >>> image = torch.ones(3, 100, 200)
        >>> chip = Chip(0, 3.0, torch.tensor([150.0, 50, 150 + 512 / 3, 50 + 512 / 3]))
        >>> pixels, target = crop_chip(image, {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0)}, chip)
        >>> pixels.shape, pixels[0, 0, 0].item(), pixels[0, -1, -1].item()  # past the image: zero
        (torch.Size([3, 512, 512]), 1.0, 0.0)
    """
    from scalekit.scale.levels import SNIPER_LEVELS

    levels = levels if levels is not None else SNIPER_LEVELS
    if isinstance(chip_size, bool) or not isinstance(chip_size, (int, np.integer)) or chip_size <= 0:
        raise ValueError(f"chip_size must be a positive int, got {chip_size!r}")
    if not 0 <= chip.level < len(levels):
        raise ValueError(f"chip.level {chip.level} is not a level of levels ({len(levels)} levels)")
    c, h, w = image.shape
    x1, y1, x2, y2 = chip.box.tolist()
    f = chip.scale
    out = image.new_zeros((c, chip_size, chip_size), dtype=torch.float32 if not image.is_floating_point() else image.dtype)
    # the part of the window inside the image, in whole source pixels
    sx1, sy1 = max(0, math.floor(x1)), max(0, math.floor(y1))
    sx2, sy2 = min(w, math.ceil(x2)), min(h, math.ceil(y2))
    if sx2 > sx1 and sy2 > sy1:
        region = image[:, sy1:sy2, sx1:sx2].float()
        dh, dw = max(1, round((sy2 - sy1) * f)), max(1, round((sx2 - sx1) * f))
        resized = F.interpolate(region[None], size=(dh, dw), mode="bilinear", align_corners=False)[0]
        # where the region lands in the chip; it may start up to a pixel before the window
        ox, oy = round((sx1 - x1) * f), round((sy1 - y1) * f)
        src_x, src_y, dst_x, dst_y = max(0, -ox), max(0, -oy), max(0, ox), max(0, oy)
        ww, hh = min(dw - src_x, chip_size - dst_x), min(dh - src_y, chip_size - dst_y)
        if hh > 0 and ww > 0:
            out[:, dst_y : dst_y + hh, dst_x : dst_x + ww] = resized[:, src_y : src_y + hh, src_x : src_x + ww].to(out.dtype)
    return out, chip_targets(chip, target, levels[chip.level][1], min_size=min_size)


def chip_stats(generator: ChipGenerator, annotations: Sequence[tuple], *, single_scale=(800, 1333)) -> dict:
    """Chips per image, pixels processed relative to single-scale training, coverage.

    Args:
        generator: the chip generator.
        annotations: per image ``(boxes [N, 4], (height, width))`` (or with
            proposals as a third element, for negative chips).
        single_scale: (shorter side, max longer side) of the single-scale
            baseline (800 x 1333: the thesis' ~30% more pixels on COCO).

    Returns:
        ``{"images", "chips_per_image", "pos_chips_per_image", "pixel_ratio",
        "coverage"}``: ``pixel_ratio`` = chip pixels / single-scale pixels;
        ``coverage`` = fraction of valid (level, box) pairs inside a positive chip.

    Example:
        >>> import torch
        >>> from scalekit.chips import ChipGenerator, chip_stats
        >>> s = chip_stats(ChipGenerator(), [(torch.tensor([[10.0, 10, 40, 40]]), (480, 640))])
        >>> s["chips_per_image"], s["coverage"]
        (1.0, 1.0)
    """
    chips = pos = covered = valid = 0
    chip_pixels = base_pixels = 0.0
    short, long = single_scale
    for index, item in enumerate(annotations):
        boxes, size, proposals = _stats_item(item, index)
        image_chips = generator.generate(boxes, size, proposals, np.random.default_rng(0))
        chips += len(image_chips)
        pos += sum(c.kind == "pos" for c in image_chips)
        chip_pixels += len(image_chips) * generator.chip_size ** 2
        h, w = size
        f = min(short / min(h, w), long / max(h, w))
        base_pixels += h * w * f * f
        b = torch.as_tensor(boxes, dtype=torch.float64).reshape(-1, 4)
        uncoverable_by_level = generator.uncoverable(b, size)
        for level, (_, area) in enumerate(generator.levels):
            v = area.valid_mask(b)
            uncoverable = set(uncoverable_by_level.get(level, []))
            idx = [i for i in v.nonzero().flatten().tolist() if i not in uncoverable]
            valid += len(idx)
            inside = set()
            for c in image_chips:
                if c.level == level and c.kind == "pos":
                    inside.update(c.gt_index.tolist())
            covered += sum(i in inside for i in idx)
    n = max(1, len(annotations))
    return {"images": len(annotations), "chips_per_image": chips / n, "pos_chips_per_image": pos / n,
            "pixel_ratio": chip_pixels / max(base_pixels, 1.0), "coverage": covered / max(valid, 1)}


def _is_size(value) -> bool:
    """A ``(height, width)`` tuple or list (``torch.Size`` too), not a tensor (labels are tensors)."""
    return isinstance(value, (tuple, list)) and len(value) == 2 and all(
        isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in value)


def _stats_item(item, index: int):
    """``(boxes, (height, width), proposals or None)`` of ``annotations[index]``, or a ValueError saying what to pass."""
    layout = "(boxes [N, 4], (height, width)) or (boxes [N, 4], (height, width), proposals [P, 4])"
    if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
        n = len(item) if isinstance(item, (tuple, list)) else type(item).__name__
        raise ValueError(f"annotations[{index}] must be {layout}, got {n} elements")
    if not _is_size(item[1]):
        hint = ""
        if len(item) == 3 and _is_size(item[2]):
            hint = (" It looks like (boxes, labels, (height, width)), as CocoDetection.annotations(i) "
                    "gives: pass annotations(i)[::2] instead.")
        got = tuple(type(v).__name__ for v in item)
        raise ValueError(f"annotations[{index}] must be {layout}; its second element must be the "
                         f"(height, width) of the image, got elements of types {got}.{hint}")
    return item[0], tuple(item[1]), item[2] if len(item) == 3 else None


_LEVEL_COLOURS = ((230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180))


def draw_chips(image: Tensor, chips: Sequence[Chip], boxes: Tensor, path, levels=None) -> None:
    """A picture like the thesis' Figure 3.1: the image, its chips (one colour per
    level; negative chips dashed-looking thin), and the ground truth of each
    level in that level's colour when valid there.

    Args:
        image: ``[3, H, W]`` in ``[0, 1]`` (or uint8).
        chips: the image's chips.
        boxes: ``[N, 4]`` ground truth.
        path: where to write the PNG.
        levels: the generator's levels (default: SNIPER's).
    """
    from PIL import Image, ImageDraw

    from scalekit.scale.levels import SNIPER_LEVELS

    levels = levels if levels is not None else SNIPER_LEVELS
    arr = image.detach().cpu()
    if arr.is_floating_point():
        arr = (arr.clamp(0, 1) * 255).round()
    pil = Image.fromarray(arr.to(torch.uint8).permute(1, 2, 0).numpy()).convert("RGB")
    draw = ImageDraw.Draw(pil)
    b = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    for level, (_, area) in enumerate(levels):
        colour = _LEVEL_COLOURS[level % len(_LEVEL_COLOURS)]
        for box in b[area.valid_mask(b)].tolist():
            draw.rectangle(box, outline=colour, width=2)
    for c in chips:
        colour = _LEVEL_COLOURS[c.level % len(_LEVEL_COLOURS)]
        draw.rectangle(c.box.tolist(), outline=colour, width=3 if c.kind == "pos" else 1)
    pil.save(path)
