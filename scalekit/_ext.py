"""Loads scalekit's compiled op libraries, ``torch.ops.scalekit``, once.

``scalekit._C_stable`` declares every op and holds the CPU kernels; it is built
on torch's stable ABI, so one binary loads on its target torch (2.10) and every
later release. ``scalekit._C_cuda`` (built only with CUDA) holds the CUDA
kernels on the classic ABI and loads only with the torch it was built against.

``import scalekit`` works without the compiled library (the pure-Python parts
stay usable); calling a compiled op without it raises one error that says how
to build it.
"""

from __future__ import annotations

import torch

__all__ = ["has_ops", "assert_has_ops", "has_cuda_kernels", "cuda_load_error"]

_BUILD = (
    "Build it from the repository root with `pip install .` (or `pip install -e .` for a "
    "checkout you edit; set FORCE_CUDA=1 for the CUDA kernels), or run `make test`, which does "
    "everything."
)

# csrc/common/interrupt.h: the message of a kernel stopped by a Python signal handler.
_INTERRUPTED = "scalekit: interrupted by a Python signal handler"


def _find(name: str):
    import importlib.util

    # Look before importing: a missing `scalekit/_C_stable*.so` would otherwise
    # surface as Python's "cannot import name ... from partially initialized
    # module 'scalekit' (most likely due to a circular import)", which is not the cause.
    try:
        return importlib.util.find_spec(f"scalekit.{name}")
    except (ImportError, ValueError):  # an odd sys.modules entry: let the import say what it is
        return True


def _load() -> str | None:
    import os

    if _find("_C_stable") is None:
        where = os.path.dirname(os.path.abspath(__file__))
        return (
            f"scalekit's compiled ops (scalekit._C_stable) are not built: there is no compiled library "
            f"scalekit/_C_stable*.so in {where}. {_BUILD}"
        )
    try:
        from scalekit import _C_stable
    except ImportError as exc:
        return (
            f"scalekit's compiled ops (scalekit._C_stable) failed to load: {exc}. It loads on torch "
            f"2.10 or later (torch {torch.__version__} is installed). {_BUILD}"
        )
    del _C_stable
    return None


def _load_cuda() -> str | None:
    """Loads the CUDA kernels if they were built; returns why they are not there, or None."""
    if _LOAD_ERROR is not None:
        return _LOAD_ERROR
    if _find("_C_cuda") is None:
        return "scalekit was built without CUDA kernels (build with FORCE_CUDA=1 or on a machine with a GPU)"
    try:
        from scalekit import _C_cuda
    except ImportError as exc:  # the usual failure when another torch built it: an undefined symbol
        return f"scalekit's CUDA kernels (scalekit._C_cuda) failed to load: {exc}. {_BUILD}"
    if _C_cuda.torch_version != torch.__version__:
        return (
            f"scalekit._C_cuda was built against torch {_C_cuda.torch_version} but torch "
            f"{torch.__version__} is installed; rebuild it. {_BUILD}"
        )
    return None


_LOAD_ERROR = _load()
_CUDA_ERROR = _load_cuda()


def cuda_load_error() -> str | None:
    """Why the CUDA kernels are not loaded (not built, or built for another torch), or None."""
    return _CUDA_ERROR


def call_op(op, *args):
    """``op(*args)``, where a kernel stopped by a Python signal handler (Ctrl-C) re-raises
    that handler's exception (:class:`KeyboardInterrupt`) instead of the RuntimeError that
    carried it across the stable ABI (csrc/common/interrupt.h)."""
    try:
        return op(*args)
    except RuntimeError as exc:
        if _INTERRUPTED in str(exc):
            from scalekit import _C_stable

            _C_stable._reraise_interrupt()
        raise


def has_ops() -> bool:
    """Whether the compiled ops (``torch.ops.scalekit``) are loaded."""
    return _LOAD_ERROR is None


def assert_has_ops() -> None:
    """Raise a :class:`RuntimeError` that says how to build the ops if they are missing."""
    if _LOAD_ERROR is not None:
        raise RuntimeError(_LOAD_ERROR)


def has_cuda_kernels() -> bool:
    """Whether the compiled library holds CUDA kernels (built with ``FORCE_CUDA=1`` or a GPU)."""
    return has_ops() and _CUDA_ERROR is None and torch._C._dispatch_has_kernel_for_dispatch_key(
        "scalekit::nms", "CUDA"
    )
