"""Build scalekit's compiled op libraries; the metadata is in pyproject.toml.

``scalekit._C_stable`` declares every op and holds the CPU kernels. It uses
torch's stable ABI only (``torch/csrc/stable``, the C shim), with
``TORCH_TARGET_VERSION`` set to the oldest torch scalekit supports
(``STABLE_TARGET``): built once, against any torch at or after that release, it
loads on that release and every later one. ``scalekit._C_cuda`` holds the CUDA
kernels on the classic C++ ABI, so it loads only with the torch it was built
against; it is built only when ``FORCE_CUDA=1`` is set or a GPU is visible, so
that CPU-only machines (and CI) build in a minute.

Both are compiled against the torch installed in the environment you install
into. pip builds in an isolated environment that hides that torch; rather than
download a second, possibly different torch for the build (see
REFERENCE-FACTS: "avoid torch as an isolated build requirement"), this file
finds the environment's own torch and builds against it, so ``pip install .``
and ``pip install -e .`` work as they do for pure-Python projects. Where no
torch can be found, the build stops with the commands to run.
"""

import glob
import os
import sys
import sysconfig

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))

_NO_TORCH = """
scalekit compiles C++ ops against the torch installed in the environment you install into,
and this build cannot import torch ({error}).

Install torch first, then install scalekit from this directory:

    pip install torch
    pip install .                          # or: pip install -e .   (a checkout you edit)

If torch is installed and this still fails (a build tool that isolates builds in a
separate environment, e.g. `python -m build` or `uv`), turn the isolation off:

    pip install --no-build-isolation .
    pip install build ninja && python -m build --wheel --no-isolation
    uv pip install --no-build-isolation .
"""


def _import_torch():
    """The environment's torch, also from inside pip's isolated build environment.

    pip runs the build with this environment's interpreter but removes its
    site-packages from ``sys.path``; they are still where sysconfig says, so
    they are appended (after the build environment's setuptools) when torch is
    not importable otherwise.
    """
    try:
        import torch

        return torch
    except ImportError:
        pass
    for key in ("purelib", "platlib"):
        path = sysconfig.get_paths()[key]
        if os.path.isdir(os.path.join(path, "torch")) and path not in sys.path:
            sys.path.append(path)
    try:
        import torch

        return torch
    except ImportError as exc:
        raise SystemExit(_NO_TORCH.format(error=f"{type(exc).__name__}: {exc}")) from None


torch = _import_torch()
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension  # noqa: E402


def _with_cuda() -> bool:
    if os.environ.get("FORCE_CUDA", "0") == "1":
        if CUDA_HOME is None:
            raise RuntimeError("FORCE_CUDA=1 but no CUDA toolkit was found; set CUDA_HOME")
        return True
    return torch.cuda.is_available() and CUDA_HOME is not None


def _sources(pattern: str) -> list[str]:
    return sorted(os.path.relpath(p, HERE) for p in glob.glob(os.path.join(HERE, pattern), recursive=True))


# The oldest torch the stable library loads on (its stable-ABI target), as (major, minor).
# 2.10: the first release whose stable surface has parallel_for, empty and calls to any op by
# name. (The GPU machines this project is lent run torch 2.11.)
STABLE_TARGET = (2, 10)


def _extra(name: str) -> list[str]:
    return os.environ.get(name, "").split()


def _stable_extension():
    target = STABLE_TARGET[0] << 56 | STABLE_TARGET[1] << 48
    # -ffp-contract=off: no fused multiply-adds, so that IoUs round exactly as
    # torchvision's do and CPU and CUDA agree bit for bit.
    return CppExtension(
        name="scalekit._C_stable",
        sources=["csrc/scalekit.cpp"] + _sources("csrc/*/cpu/*.cpp"),
        include_dirs=[os.path.join(HERE, "csrc")],
        depends=_sources("csrc/**/*.h"),  # rebuilt when a header changes; shipped in an sdist
        define_macros=[
            ("TORCH_TARGET_VERSION", f"0x{target:016x}ULL"),
            ("SCALEKIT_TORCH_TARGET", '"%d.%d"' % STABLE_TARGET),
        ],
        extra_compile_args={"cxx": ["-O3", "-ffp-contract=off"] + _extra("SCALEKIT_EXTRA_CFLAGS")},
        extra_link_args=_extra("SCALEKIT_EXTRA_LDFLAGS"),
    )


def _cuda_extension():
    return CUDAExtension(
        name="scalekit._C_cuda",
        sources=["csrc/scalekit_cuda.cpp"] + _sources("csrc/*/cuda/*.cu"),
        include_dirs=[os.path.join(HERE, "csrc")],
        depends=_sources("csrc/**/*.h"),
        define_macros=[("SCALEKIT_TORCH_VERSION", f'"{torch.__version__}"')],
        extra_compile_args={"cxx": ["-O3", "-ffp-contract=off"] + _extra("SCALEKIT_EXTRA_CFLAGS"), "nvcc": ["-O3"]},
        extra_link_args=_extra("SCALEKIT_EXTRA_LDFLAGS"),
    )


def _extensions():
    torch_version = tuple(int(v) for v in torch.__version__.split("+")[0].split(".")[:2])
    if torch_version < STABLE_TARGET:
        raise SystemExit(
            f"scalekit builds against torch >= {STABLE_TARGET[0]}.{STABLE_TARGET[1]}; "
            f"this environment has torch {torch.__version__}"
        )
    return [_stable_extension()] + ([_cuda_extension()] if _with_cuda() else [])


# Name, version, dependencies, extras and licence: pyproject.toml.
setup(
    ext_modules=_extensions(),
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
