"""SNIP's sub-image chips at the finest pyramid level (thesis §2.6.2)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from scalekit.chips.generator import as_numpy_rng

__all__ = ["snip_chips"]


def _snap(start: np.ndarray, extent: float, chip: float) -> np.ndarray:
    """Whole-pixel window starts; windows that cross the image border are shifted back onto it."""
    return np.clip(np.round(start), 0.0, max(extent - chip, 0.0))


def snip_chips(boxes: Tensor, image_size, chip_size: int = 1000, num_candidates: int = 50, *,
               generator=None) -> Tensor:
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
    chips must cover (SNIP: the ground truth valid at that level) scaled to it.

    Args:
        boxes: ``[N, 4]`` ``(x1, y1, x2, y2)`` in the level's pixels.
        image_size: ``(height, width)`` of the level's image.
        chip_size: side of a chip in pixels (1000, thesis §2.6.2).
        num_candidates: random windows drawn per pick (50, thesis §2.6.2).
        generator: ``None``, an int seed, a ``torch.Generator`` or a numpy ``Generator``.

    Returns:
        ``[K, 4]`` float32 windows ``(x1, y1, x2, y2)`` inside the image, in
        the order picked (``K = 0`` when there is nothing to cover).

    Example:
        >>> import torch
        >>> from scalekit.chips import snip_chips
        >>> boxes = torch.tensor([[10.0, 10, 40, 40], [1500, 1200, 1530, 1230], [1600, 1300, 1620, 1330]])
        >>> chips = snip_chips(boxes, (1400, 2000), generator=0)
        >>> len(chips), chips[:, 2:].sub(chips[:, :2]).unique().tolist()   # one chip per far-apart group
        (2, [1000.0])
    """
    if not isinstance(boxes, Tensor) or boxes.dim() != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must be an [N, 4] tensor, got {list(boxes.shape) if isinstance(boxes, Tensor) else type(boxes).__name__}")
    if len(image_size) != 2 or min(image_size) <= 0:
        raise ValueError(f"image_size must be (height, width) with both positive, got {tuple(image_size)}")
    if not (isinstance(chip_size, (int, float)) and chip_size > 0):
        raise ValueError(f"chip_size must be a positive number, got {chip_size!r}")
    if not (isinstance(num_candidates, int) and num_candidates > 0):
        raise ValueError(f"num_candidates must be a positive int, got {num_candidates!r}")
    rng = as_numpy_rng(generator) or np.random.default_rng()
    h, w = float(image_size[0]), float(image_size[1])
    cw, ch = min(float(chip_size), w), min(float(chip_size), h)
    b = boxes.detach().to(torch.float64).cpu().numpy()
    fits = ((b[:, 2] - b[:, 0]) <= cw) & ((b[:, 3] - b[:, 1]) <= ch)
    left = fits.copy()
    chips: list[list[float]] = []
    while left.any():
        if cw >= w and ch >= h:  # the whole image is one chip
            chips.append([0.0, 0.0, w, h])
            break
        x0 = _snap(rng.uniform(0, w, num_candidates) - cw / 2, w, cw)
        y0 = _snap(rng.uniform(0, h, num_candidates) - ch / 2, h, ch)
        inside = ((x0[:, None] <= b[None, :, 0]) & (b[None, :, 2] <= x0[:, None] + cw)
                  & (y0[:, None] <= b[None, :, 1]) & (b[None, :, 3] <= y0[:, None] + ch) & left[None])
        counts = inside.sum(1)
        k = int(np.argmax(counts))
        if counts[k] == 0:  # no candidate helps: centre a window on an uncovered box
            j = int(np.flatnonzero(left)[0])
            x0 = np.clip(np.array([(b[j, 0] + b[j, 2] - cw) / 2]), 0.0, max(w - cw, 0.0))
            y0 = np.clip(np.array([(b[j, 1] + b[j, 3] - ch) / 2]), 0.0, max(h - ch, 0.0))
            k = 0
            inside = ((x0[:, None] <= b[None, :, 0]) & (b[None, :, 2] <= x0[:, None] + cw)
                      & (y0[:, None] <= b[None, :, 1]) & (b[None, :, 3] <= y0[:, None] + ch) & left[None])
            left[j] = False  # covered now, or a box reaching past the image that no window holds
        if inside[k].any():
            chips.append([float(x0[k]), float(y0[k]), float(x0[k]) + cw, float(y0[k]) + ch])
        left &= ~inside[k]
    return torch.tensor(chips, dtype=torch.float32).reshape(-1, 4)
