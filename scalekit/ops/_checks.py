"""Argument checks shared by the ops: each error names the argument and says
what was expected and what came. Shape, dtype and device checks only, so that
they run under ``torch.compile`` without a device sync; value checks (finite
boxes, ranges) happen in the kernels."""

from __future__ import annotations

import functools
import math
import numbers

import torch
from torch import Tensor


def _find_proxy(obj):
    if isinstance(obj, torch.fx.Proxy):
        return obj
    if isinstance(obj, (list, tuple)):
        for item in obj:
            found = _find_proxy(item)
            if found is not None:
                return found
    return None


def fx_leaf(fn):
    """Make ``fn`` a leaf of :func:`torch.fx.symbolic_trace`, wherever it is called from.

    Called with a :class:`torch.fx.Proxy` among its arguments (directly or in a
    list), ``fn`` records one ``call_function`` node instead of running, as
    ``torch.fx.wrap`` does for calls from its own module; called with tensors it
    runs as usual. ``torch.export`` and ``torch.compile`` trace through it.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        proxy = _find_proxy(list(args) + list(kwargs.values()))
        if proxy is not None:
            return proxy.tracer.create_proxy("call_function", wrapper, args, kwargs)
        return fn(*args, **kwargs)

    return wrapper


def check_tensor(x, name: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")


def check_float(x: Tensor, name: str) -> None:
    check_tensor(x, name)
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating point tensor, got {x.dtype}")


def check_boxes(boxes: Tensor, name: str = "boxes") -> None:
    check_float(boxes, name)
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name} must have shape [N, 4], got {list(boxes.shape)}")


def check_per_box(x: Tensor, boxes: Tensor, name: str, *, integer: bool = False) -> None:
    """``x`` is a 1-D tensor with one entry per box, on the device of ``boxes``."""
    check_tensor(x, name)
    if integer:
        if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
            raise TypeError(f"{name} must be an integer tensor, got {x.dtype}")
    elif not x.is_floating_point():
        raise TypeError(f"{name} must be a floating point tensor, got {x.dtype}")
    if x.dim() != 1 or x.shape[0] != boxes.shape[0]:
        raise ValueError(
            f"{name} must have shape [N] with N = boxes.shape[0] = {boxes.shape[0]}, "
            f"got {list(x.shape)}"
        )
    check_same_device(boxes, x, name)


def check_same_device(boxes: Tensor, x: Tensor, name: str) -> None:
    if x.device != boxes.device:
        raise ValueError(f"{name} must be on the device of boxes ({boxes.device}), got {x.device}")


def _is_real(value) -> bool:
    """A real number: Python's and numpy's (numpy registers its scalars with
    :mod:`numbers`), and the symbolic ints and floats of ``torch.compile``; never a bool."""
    if isinstance(value, bool):  # numpy.bool_ is no numbers.Real either
        return False
    return isinstance(value, (numbers.Real, torch.SymInt, torch.SymFloat))


def _is_integral(value) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, (numbers.Integral, torch.SymInt))


def check_number(value, name: str, *, minimum: float | None = None, strict: bool = False,
                 allow_inf: bool = True) -> float:
    """``value`` as a float, or a TypeError / ValueError naming ``name``.

    Accepts Python and numpy numbers and one-element tensors (as torchvision
    does for thresholds). The comparisons are plain ``!=`` / ``==`` / ``<``,
    never :func:`math.isnan`, so that the check traces under ``torch.compile``
    when the number is symbolic (``dynamic=True``).
    """
    if isinstance(value, Tensor) and value.numel() == 1 and not value.is_complex() and value.dtype != torch.bool:
        value = value.item()  # a 0-d tensor threshold, as torchvision accepts
    if not _is_real(value):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = value if isinstance(value, (torch.SymInt, torch.SymFloat)) else float(value)
    if value != value or (not allow_inf and (value == math.inf or value == -math.inf)):
        raise ValueError(f"{name} must be a {'finite ' if not allow_inf else ''}number, got {value}")
    if minimum is not None and (value <= minimum if strict else value < minimum):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {minimum}, got {value}")
    return value


def check_int(value, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as an int (Python or numpy integer; not a bool, not a float), else a clear error."""
    if not _is_integral(value):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    value = value if isinstance(value, torch.SymInt) else int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def check_pair(value, name: str, *, minimum: int | None = None, maximum: int | None = None) -> tuple[int, int]:
    """An int or a pair of ints as a pair, each in ``[minimum, maximum]`` where given.

    Ints are Python or numpy integers; a float (even ``3.0``) is a TypeError,
    as for :func:`torch.nn.functional.conv2d`'s ``stride``.
    """
    if _is_integral(value):
        pair = (value, value)
    elif isinstance(value, (tuple, list, torch.Size)) and len(value) == 2 and all(_is_integral(v) for v in value):
        pair = tuple(value)
    else:
        raise TypeError(f"{name} must be an int or a pair of ints, got {type(value).__name__} {value!r}")
    pair = tuple(v if isinstance(v, torch.SymInt) else int(v) for v in pair)
    if minimum is not None and not all(v >= minimum for v in pair):
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    if maximum is not None and not all(v <= maximum for v in pair):
        raise ValueError(f"{name} must be <= {maximum}, got {value!r}")
    return pair
