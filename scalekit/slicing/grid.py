"""The slice grid of sliced inference: fixed-size windows with overlap, the last row
and column shifted back inside the image (SAHI's ``get_slice_bboxes``)."""

from __future__ import annotations

import numbers

import torch
from torch import Tensor

from scalekit._args import integer, real

__all__ = ["slice_grid", "slice_sizes", "overlap_ratios", "MAX_SLICES"]

MAX_SLICES = 10**6
"""The most windows :func:`slice_grid` makes (a 100,000-px square image in 512-px slices
with overlap 0.2 needs 59,536); more raise a ``ValueError`` before any is made."""


def _pair(value, name: str, check):
    """``value`` or ``(height, width)`` as a checked pair; the error names ``name``."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be one number or a (height, width) pair, got {len(value)} values {value!r}")
        return check(f"{name}[0] (height)", value[0]), check(f"{name}[1] (width)", value[1])
    if isinstance(value, Tensor) and value.numel() == 1 and value.dtype != torch.bool and not value.is_complex():
        value = value.item()
    v = check(name, value)
    return v, v


def slice_sizes(slice_size) -> tuple[int, int]:
    """``slice_size`` (an int, or ``(height, width)``) checked: whole pixels ``>= 1``."""
    return _pair(slice_size, "slice_size", lambda n, v: integer(n, v, minimum=1))


def _ratio(name: str, value) -> float:
    value = real(name, value)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1) (a fraction of the slice size), got {value}")
    return value


def overlap_ratios(overlap) -> tuple[float, float]:
    """``overlap`` (a ratio, or ``(height, width)`` ratios) checked: each in ``[0, 1)``."""
    if isinstance(overlap, (numbers.Real, tuple, list, Tensor)):
        return _pair(overlap, "overlap", _ratio)
    raise TypeError(f"overlap must be a number in [0, 1) or a (height, width) pair of them, "
                    f"got {type(overlap).__name__} {overlap!r}")


def _count(length: int, size: int, step: int) -> int:
    """How many windows :func:`_starts` makes, without making them."""
    return 1 if length <= size else -(-(length - size) // step) + 1


def _starts(length: int, size: int, step: int) -> list[tuple[int, int]]:
    """``(start, end)`` of the windows along one side: ``0, step, 2 step, ...`` until a
    window reaches the end; the last one ends at ``length`` (starting at ``max(0, length - size)``)."""
    spans, start = [], 0
    while True:
        end = start + size
        if end >= length:
            spans.append((max(0, length - size), length))
            return spans
        spans.append((start, end))
        start = end - (size - step)


def slice_grid(image_height: int, image_width: int, slice_size=512, overlap=0.2) -> Tensor:
    """The windows that slice an ``image_height x image_width`` image, row by row.

    Windows are ``slice_size`` pixels (an int, or ``(height, width)``) and
    overlap by ``int(overlap * slice_size)`` whole pixels (``overlap`` in
    ``[0, 1)``, or ``(height, width)`` ratios), so consecutive windows start
    ``slice_size - int(overlap * slice_size)`` apart. The last window of each
    row and column is shifted back to end at the image border instead of
    leaving it (it overlaps its neighbour more); a side shorter than the slice
    gets one window, the whole side (smaller than ``slice_size``, never padded).
    Rows run top to bottom, left to right within a row.

    This is SAHI's ``get_slice_bboxes`` (``sahi.slicing``, 0.12) window for
    window and in the same order; the tests compare the two. Defaults:
    512-px slices, SNIPER's chip size (thesis §3.3), and SAHI's overlap 0.2.

    More than :data:`MAX_SLICES` (10⁶) windows raise a ``ValueError`` before any is made.

    Args:
        image_height, image_width: the image size in pixels, ``>= 1``.
        slice_size: an int ``>= 1`` or ``(height, width)``.
        overlap: a ratio in ``[0, 1)`` or ``(height, width)`` ratios.

    Returns:
        ``[S, 4]`` int64 windows ``(x1, y1, x2, y2)`` in pixels, ``x2`` and ``y2``
        exclusive (``image[:, y1:y2, x1:x2]`` is the slice).

    Example:
        >>> from scalekit.slicing import slice_grid
        >>> slice_grid(300, 500, slice_size=200, overlap=0.25)  # 50-px overlap, last column shifted to 300
        tensor([[  0,   0, 200, 200],
                [150,   0, 350, 200],
                [300,   0, 500, 200],
                [  0, 100, 200, 300],
                [150, 100, 350, 300],
                [300, 100, 500, 300]])
    """
    height, width = integer("image_height", image_height, minimum=1), integer("image_width", image_width, minimum=1)
    (sh, sw), (oh, ow) = slice_sizes(slice_size), overlap_ratios(overlap)
    step_h, step_w = sh - int(oh * sh), sw - int(ow * sw)
    count = _count(height, sh, step_h) * _count(width, sw, step_w)
    if count > MAX_SLICES:
        raise ValueError(f"slice_size={slice_size!r} with overlap={overlap!r} would cut the {height}x{width} image "
                         f"into {count:.3g} slices, above MAX_SLICES={MAX_SLICES:.0e}; use larger slices")
    rows, cols = _starts(height, sh, step_h), _starts(width, sw, step_w)
    return torch.tensor([[x1, y1, x2, y2] for y1, y2 in rows for x1, x2 in cols], dtype=torch.int64).reshape(-1, 4)
