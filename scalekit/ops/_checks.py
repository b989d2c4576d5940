"""Argument checks shared by the ops: each error names the argument and says
what was expected and what came. Shape, dtype and device checks only, so that
they run under ``torch.compile`` without a device sync; value checks (finite
boxes, ranges) happen in the kernels."""

from __future__ import annotations

import functools
import math

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


def check_number(value, name: str, *, minimum: float | None = None, strict: bool = False,
                 allow_inf: bool = True) -> float:
    if isinstance(value, Tensor) and value.numel() == 1 and not value.is_complex() and value.dtype != torch.bool:
        value = value.item()  # a 0-d tensor threshold, as torchvision accepts
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if math.isnan(value) or (not allow_inf and math.isinf(value)):
        raise ValueError(f"{name} must be a {'finite ' if not allow_inf else ''}number, got {value}")
    if minimum is not None and (value <= minimum if strict else value < minimum):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {minimum}, got {value}")
    return value


def check_pair(value, name: str, *, minimum: int | None = None) -> tuple[int, int]:
    """An int or a pair of ints as a pair, each ``>= minimum`` if given."""
    pair = (value, value) if isinstance(value, int) and not isinstance(value, bool) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in pair):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if minimum is not None and not all(v >= minimum for v in pair):
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return pair
