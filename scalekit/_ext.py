"""Loads scalekit's compiled op library, ``torch.ops.scalekit``, once.

``import scalekit`` works without the compiled library (the pure-Python parts
stay usable); calling a compiled op without it raises one error that says how
to build it.
"""

from __future__ import annotations

import torch

__all__ = ["has_ops", "assert_has_ops", "has_cuda_kernels"]

_BUILD = (
    "Build it from the repository root with `pip install .` (or `pip install -e .` for a "
    "checkout you edit; set FORCE_CUDA=1 for the CUDA kernels), or run `make test`, which does "
    "everything."
)


def _load() -> str | None:
    import importlib.util
    import os

    # Look before importing: a missing `scalekit/_C*.so` would otherwise surface
    # as Python's "cannot import name '_C' from partially initialized module
    # 'scalekit' (most likely due to a circular import)", which is not the cause.
    try:
        spec = importlib.util.find_spec("scalekit._C")
    except (ImportError, ValueError):  # an odd sys.modules entry: let the import below say what it is
        spec = True
    if spec is None:
        where = os.path.dirname(os.path.abspath(__file__))
        return (
            f"scalekit's compiled ops (scalekit._C) are not built: there is no compiled library "
            f"scalekit/_C*.so in {where}. {_BUILD}"
        )
    try:
        from scalekit import _C
    except ImportError as exc:
        return f"scalekit's compiled ops (scalekit._C) failed to load: {exc}. {_BUILD}"
    if _C.torch_version != torch.__version__:
        return (
            f"scalekit._C was built against torch {_C.torch_version} but torch "
            f"{torch.__version__} is installed; rebuild it. {_BUILD}"
        )
    return None


_LOAD_ERROR = _load()


def has_ops() -> bool:
    """Whether the compiled ops (``torch.ops.scalekit``) are loaded."""
    return _LOAD_ERROR is None


def assert_has_ops() -> None:
    """Raise a :class:`RuntimeError` that says how to build the ops if they are missing."""
    if _LOAD_ERROR is not None:
        raise RuntimeError(_LOAD_ERROR)


def has_cuda_kernels() -> bool:
    """Whether the compiled library holds CUDA kernels (built with ``FORCE_CUDA=1`` or a GPU)."""
    return has_ops() and torch._C._dispatch_has_kernel_for_dispatch_key("scalekit::nms", "CUDA")
