"""Argument checks shared by the layers: one wording for "expected what, got what".

Python and numpy numbers are accepted alike (``np.int64(6)`` is an integer,
``np.float32(0.5)`` a real); ``bool`` is neither, and a float is never
silently truncated to an integer.
"""

from __future__ import annotations

import math
import numbers

__all__ = ["integer", "real"]


def integer(name: str, value, minimum: int | None = None) -> int:
    """``value`` as a Python ``int``, or a ``TypeError``/``ValueError`` naming ``name``.

    Example:
        >>> import numpy as np
        >>> integer("chunk_len", np.int64(6), minimum=1)
        6
        >>> integer("chunk_len", 6.0)
        Traceback (most recent call last):
        ...
        TypeError: chunk_len must be an integer, got float 6.0
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def real(name: str, value, *, minimum: float | None = None, positive: bool = False) -> float:
    """``value`` as a finite Python ``float``, or a ``TypeError``/``ValueError`` naming ``name``.

    ``minimum``: the smallest value allowed (inclusive); ``positive``: ``> 0``.

    Example:
        >>> real("threshold", float("nan"))
        Traceback (most recent call last):
        ...
        ValueError: threshold must be a finite number, got nan
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value
