import sys

import pytest
import torch

import scalekit
from scalekit import _ext


def test_ops_are_loaded():
    assert _ext.has_ops()
    assert hasattr(torch.ops.scalekit, "nms")
    assert hasattr(torch.ops.scalekit, "soft_nms")


def test_missing_library_gives_one_error_that_says_how_to_build(monkeypatch):
    monkeypatch.setitem(sys.modules, "scalekit._C", None)  # import of scalekit._C fails
    monkeypatch.delattr(scalekit, "_C", raising=False)
    message = _ext._load()
    assert "pip install --no-build-isolation -e ." in message
    monkeypatch.setattr(_ext, "_LOAD_ERROR", message)
    with pytest.raises(RuntimeError, match="no-build-isolation"):
        scalekit.ops.nms(torch.zeros(1, 4), torch.zeros(1), 0.5)


def test_torch_version_mismatch_is_reported(monkeypatch):
    from scalekit import _C

    monkeypatch.setattr(_C, "torch_version", "0.0.1")
    message = _ext._load()
    assert "built against torch 0.0.1" in message and torch.__version__ in message
