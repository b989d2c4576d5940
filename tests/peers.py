"""The peers the tests compare against, imported once. A peer that is not installed (or
does not load beside this torch, as PyPI's torchvision beside a CPU-only torch file)
skips only the tests that use it: the op tests still run against their own references,
which is how `make smoke` runs them in a venv with another torch and no torchvision."""

from __future__ import annotations

import pytest


class _Missing:
    def __init__(self, name: str, error: BaseException) -> None:
        self._name, self._error = name, error

    def __getattr__(self, attr: str):
        pytest.skip(f"needs {self._name}, the peer this test compares with ({type(self._error).__name__}: "
                    f"{self._error})")


try:
    import torchvision
except (ImportError, RuntimeError) as exc:  # RuntimeError: "operator torchvision::nms does not exist"
    torchvision = _Missing("torchvision", exc)

__all__ = ["torchvision"]
