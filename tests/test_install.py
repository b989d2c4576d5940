"""Installing scalekit the ways users try (issue 12).

pip builds a project in an isolated environment that holds only the build
requirements (setuptools, ninja) and hides the target environment's packages;
setup.py must still find the target's torch there, and, where there is none,
stop with the commands to run. Both are run here as pip runs them: the target
environment's interpreter, a ``sitecustomize`` on ``PYTHONPATH`` that drops
its site-packages from ``sys.path`` (pip's own mechanism), and only a copy of
setuptools importable. The full ``pip install`` of a wheel into a fresh venv
is CI's ``make smoke``.
"""

import os
import shutil
import subprocess
import sys
import sysconfig

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


_SITECUSTOMIZE = """
import os, sys, sysconfig
_drop = {os.path.normcase(os.path.realpath(sysconfig.get_paths()[k])) for k in ("purelib", "platlib")}
sys.path[:] = [p for p in sys.path if os.path.normcase(os.path.realpath(p)) not in _drop]
"""


@pytest.fixture(scope="module")
def build_env(tmp_path_factory):
    """A directory holding setuptools alone, like pip's isolated build environment."""
    import setuptools

    env = tmp_path_factory.mktemp("build-env")
    (env / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    src = os.path.dirname(setuptools.__file__)
    shutil.copytree(src, env / "setuptools", ignore=shutil.ignore_patterns("__pycache__", "tests"))
    for extra in ("_distutils_hack", "pkg_resources"):
        path = os.path.join(os.path.dirname(src), extra)
        if os.path.isdir(path):
            shutil.copytree(path, env / extra, ignore=shutil.ignore_patterns("__pycache__", "tests"))
    return env


def _setup_py(python, build_env, *args):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONPATH"] = str(build_env)
    env["PYTHONNOUSERSITE"] = "1"
    return subprocess.run([python, "setup.py", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


def test_isolated_build_finds_the_target_environments_torch(build_env):
    # torch is importable only from the target's site-packages, which the build environment hides
    probe = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True, text=True, cwd=build_env,
                           env=dict(os.environ, PYTHONPATH=str(build_env)))
    assert probe.returncode != 0 and "No module named 'torch'" in probe.stderr
    r = _setup_py(sys.executable, build_env, "--name", "--version")
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split()[-2:] == ["torch-scalekit", "0.1.0"], r.stdout


def test_a_build_without_any_torch_says_what_to_run(build_env):
    base = getattr(sys, "_base_executable", None) or sys.executable
    purelib = subprocess.run([base, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True).stdout.strip()
    if os.path.isdir(os.path.join(purelib, "torch")) or purelib == sysconfig.get_paths()["purelib"]:
        pytest.skip("needs an interpreter without torch (the base of this venv has it)")
    r = _setup_py(base, build_env, "--version")
    assert r.returncode != 0
    assert "cannot import torch" in r.stderr and "pip install torch" in r.stderr
    assert "pip install --no-build-isolation ." in r.stderr and "python -m build --wheel --no-isolation" in r.stderr
    assert "Traceback" not in r.stderr


def test_metadata_declares_what_users_need():
    import tomllib

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    assert project["name"] == "torch-scalekit"  # "scalekit" on PyPI is another project
    deps = {d.split(">")[0].split("=")[0].strip().lower() for d in project["dependencies"]}
    assert {"torch", "numpy", "pycocotools", "pillow"} <= deps
    assert project["license"] == "BSD-3-Clause" and os.path.isfile(os.path.join(ROOT, "LICENSE"))
    assert {"video", "test", "docs"} <= set(project["optional-dependencies"])
