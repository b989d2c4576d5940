import os
import shutil
import site
import subprocess
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
    assert "scalekit._C" in message and "pip install ." in message
    monkeypatch.setattr(_ext, "_LOAD_ERROR", message)
    with pytest.raises(RuntimeError, match="pip install"):
        scalekit.ops.nms(torch.zeros(1, 4), torch.zeros(1), 0.5)


def test_torch_version_mismatch_is_reported(monkeypatch):
    from scalekit import _C

    monkeypatch.setattr(_C, "torch_version", "0.0.1")
    message = _ext._load()
    assert "built against torch 0.0.1" in message and torch.__version__ in message


def test_a_package_without_its_compiled_library_says_so_not_circular_import(tmp_path):
    # The Python files of scalekit, without _C*.so: what a user has after
    # copying the sources, or after a build that never ran.
    src = os.path.dirname(scalekit.__file__)
    shutil.copytree(src, tmp_path / "scalekit", ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    code = (
        "import torch, scalekit.ops\n"
        "assert not scalekit._ext.has_ops()\n"
        "scalekit.ops.nms(torch.zeros(1, 4), torch.zeros(1), 0.5)\n"
    )
    # -S: no .pth files, so that an editable install of scalekit elsewhere
    # (its import hook maps scalekit._C to that checkout) cannot stand in.
    path = os.pathsep.join([str(tmp_path), *site.getsitepackages()])
    env = dict(os.environ, PYTHONPATH=path)
    r = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("RuntimeError: scalekit's compiled ops (scalekit._C) are not built"), r.stderr[-2000:]
    assert str(tmp_path / "scalekit") in last and "pip install ." in last
    assert "circular import" not in r.stderr
