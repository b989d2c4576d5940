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
    monkeypatch.setitem(sys.modules, "scalekit._C_stable", None)  # import of scalekit._C_stable fails
    monkeypatch.delattr(scalekit, "_C_stable", raising=False)
    message = _ext._load()
    assert "scalekit._C_stable" in message and "pip install ." in message
    monkeypatch.setattr(_ext, "_LOAD_ERROR", message)
    with pytest.raises(RuntimeError, match="pip install"):
        scalekit.ops.nms(torch.zeros(1, 4), torch.zeros(1), 0.5)


def test_the_op_library_uses_the_stable_abi_only():
    # The ABI audit: every symbol _C_stable takes from torch is a C function of the stable
    # shim (aoti_torch_*, torch_*), none a C++ symbol of ATen, c10 or torch's classic API;
    # that is what lets one build load on later torch releases.
    from scalekit import _C_stable

    assert _C_stable.torch_target == "2.10"
    undefined = subprocess.run(["nm", "-D", "--undefined-only", _C_stable.__file__], capture_output=True,
                               text=True, check=True).stdout.split()
    cxx = subprocess.run(["c++filt"], input="\n".join(s for s in undefined if s.startswith("_Z")),
                         capture_output=True, text=True, check=True).stdout.splitlines()
    classic = [s for s in cxx if s.startswith(("at::", "c10::", "torch::", "caffe2::", "pybind11::"))]
    assert classic == [], classic
    assert any(s.startswith("aoti_torch_") for s in undefined)  # the audit reads real symbols


def test_cuda_library_built_for_another_torch_is_reported(monkeypatch):
    import types

    fake = types.ModuleType("scalekit._C_cuda")
    fake.torch_version = "0.0.1"
    monkeypatch.setattr(_ext, "_find", lambda name: True)
    monkeypatch.setitem(sys.modules, "scalekit._C_cuda", fake)
    monkeypatch.setattr(scalekit, "_C_cuda", fake, raising=False)
    message = _ext._load_cuda()
    assert "built against torch 0.0.1" in message and torch.__version__ in message


def test_no_cuda_library_says_how_to_build_it(monkeypatch):
    monkeypatch.setattr(_ext, "_find", lambda name: None)
    assert "FORCE_CUDA=1" in _ext._load_cuda()


def test_a_package_without_its_compiled_library_says_so_not_circular_import(tmp_path):
    # The Python files of scalekit, without _C_stable*.so: what a user has after
    # copying the sources, or after a build that never ran.
    src = os.path.dirname(scalekit.__file__)
    shutil.copytree(src, tmp_path / "scalekit", ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    code = (
        "import torch, scalekit.ops\n"
        "assert not scalekit._ext.has_ops()\n"
        "scalekit.ops.nms(torch.zeros(1, 4), torch.zeros(1), 0.5)\n"
    )
    # -S: no .pth files, so that an editable install of scalekit elsewhere
    # (its import hook maps scalekit._C_stable to that checkout) cannot stand in.
    path = os.pathsep.join([str(tmp_path), *site.getsitepackages()])
    env = dict(os.environ, PYTHONPATH=path)
    r = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("RuntimeError: scalekit's compiled ops (scalekit._C_stable) are not built"), r.stderr[-2000:]
    assert str(tmp_path / "scalekit") in last and "pip install ." in last
    assert "circular import" not in r.stderr
