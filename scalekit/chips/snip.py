"""SNIP's sub-image chips at the finest pyramid level (thesis §2.6.2)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from scalekit.boxes import inside_window
from scalekit.chips.generator import Chip, _whole, as_numpy_rng, check_boxes

__all__ = ["snip_chips"]


def _snap(start: np.ndarray, extent: float, chip: float) -> np.ndarray:
    """Whole-pixel window starts; windows that cross the image border are shifted back onto it."""
    return np.clip(np.round(start), 0.0, max(extent - chip, 0.0))


def snip_chips(boxes: Tensor, image_size, chip_size: int = 1000, num_candidates: int = 50, *,
               generator=None, level: int = 0, scale: float = 1.0) -> list[Chip]:
    """Sub-image chips that cover every given box, picked greedily from random windows.

    SNIP trains its finest level (1400x2000) on 1000x1000 crops: draw
    ``num_candidates`` randomly positioned ``chip_size`` windows, keep the one
    that fully contains the most not-yet-covered boxes, and repeat until every
    box is covered (thesis §2.6.2: 50 chips, 1000x1000, about 1.7 per image on
    COCO). Each window's centre is uniform over the image and a window that
    crosses the border is snapped to it (windows start on whole pixels), so
    many windows touch the image's edges, as the thesis does to speed up the
    sampling. An image no larger than
    a chip is one window, the image itself; a round in which no candidate
    covers anything (unlucky draws) adds the window centred on the first
    uncovered box, so the result always covers every coverable box. Boxes
    wider or taller than a chip, or reaching past the image, cannot be
    covered and are left out.

    Coordinates are those of the level's resized image: pass the boxes the
    chips must cover (SNIP: the ground truth valid at that level) scaled to
    it. The chips are :class:`Chip` s, as SNIPER's: ``chip.window`` is the
    window in the level's pixels, ``chip.box`` the window divided by
    ``scale`` (in original-image pixels when ``scale`` is the level's factor),
    ``gt_index`` the given boxes wholly inside it. Boxes are checked as
    :class:`ChipGenerator` checks them (``[N, 4]``, finite, not reversed).

    Args:
        boxes: ``[N, 4]`` ``(x1, y1, x2, y2)`` in the level's pixels.
        image_size: ``(height, width)`` of the level's image.
        chip_size: side of a chip in pixels (1000, thesis §2.6.2).
        num_candidates: random windows drawn per pick (50, thesis §2.6.2).
        generator: ``None``, an int seed, a ``torch.Generator`` or a numpy ``Generator``.
        level: the level index the chips carry.
        scale: the level's resize factor the chips carry.

    Returns:
        the chips in the order picked (none when there is nothing to cover).

    Example:
        >>> import torch
        >>> from scalekit.chips import snip_chips
        >>> boxes = torch.tensor([[10.0, 10, 40, 40], [1500, 1200, 1530, 1230], [1600, 1300, 1620, 1330]])
        >>> chips = snip_chips(boxes, (1400, 2000), generator=0)
        >>> [(c.window[2:] - c.window[:2]).tolist() for c in chips]   # one chip per far-apart group
        [[1000.0, 1000.0], [1000.0, 1000.0]]
        >>> sorted(i for c in chips for i in c.gt_index.tolist())
        [0, 1, 2]
    """
    if not isinstance(boxes, Tensor):
        raise ValueError(f"boxes must be an [N, 4] tensor, got {type(boxes).__name__}")
    b, _ = check_boxes(boxes, image_size, "boxes", must_overlap=False)
    h, w = (float(v) for v in image_size)
    if isinstance(chip_size, bool) or not (isinstance(chip_size, (int, float, np.integer, np.floating))
                                           and np.isfinite(chip_size) and chip_size > 0):
        raise ValueError(f"chip_size must be a positive number, got {chip_size!r}")
    num_candidates = _whole(num_candidates, "num_candidates")
    scale = float(scale)
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be finite and > 0, got {scale}")
    rng = as_numpy_rng(generator) or np.random.default_rng()
    cw, ch = min(float(chip_size), w), min(float(chip_size), h)
    fits = ((b[:, 2] - b[:, 0]) <= cw) & ((b[:, 3] - b[:, 1]) <= ch)
    left = fits.copy()
    windows: list[np.ndarray] = []
    while left.any():
        if cw >= w and ch >= h:  # the whole image is one chip
            windows.append(np.array([0.0, 0.0, w, h]))
            break
        x0 = _snap(rng.uniform(0, w, num_candidates) - cw / 2, w, cw)
        y0 = _snap(rng.uniform(0, h, num_candidates) - ch / 2, h, ch)
        inside = inside_window(b, np.stack([x0, y0, x0 + cw, y0 + ch], 1)) & left[None]
        counts = inside.sum(1)
        k = int(np.argmax(counts))
        if counts[k] == 0:  # no candidate helps: centre a window on an uncovered box
            j = int(np.flatnonzero(left)[0])
            x0 = np.clip(np.array([(b[j, 0] + b[j, 2] - cw) / 2]), 0.0, max(w - cw, 0.0))
            y0 = np.clip(np.array([(b[j, 1] + b[j, 3] - ch) / 2]), 0.0, max(h - ch, 0.0))
            k = 0
            inside = inside_window(b, np.stack([x0, y0, x0 + cw, y0 + ch], 1)) & left[None]
            left[j] = False  # covered now, or a box reaching past the image that no window holds
        if inside[k].any():
            windows.append(np.array([x0[k], y0[k], x0[k] + cw, y0[k] + ch]))
        left &= ~inside[k]
    return [Chip(level, scale, torch.from_numpy(win / scale).float(),
                 torch.from_numpy(np.flatnonzero(inside_window(b, win))), "pos") for win in windows]
