"""Build scalekit's compiled op library ``scalekit._C``; the metadata is in pyproject.toml.

The extension is compiled against the torch installed in the environment you
install into (a C++ extension only loads with the torch it was built against).
pip builds in an isolated environment that hides that torch; rather than
download a second, possibly different torch for the build (see
REFERENCE-FACTS: "avoid torch as an isolated build requirement"), this file
finds the environment's own torch and builds against it, so ``pip install .``
and ``pip install -e .`` work as they do for pure-Python projects. Where no
torch can be found, the build stops with the commands to run.

CUDA kernels are built only when ``FORCE_CUDA=1`` is set or a GPU is visible,
so that CPU-only machines (and CI) build in a minute.
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


def _extension():
    with_cuda = _with_cuda()
    sources = _sources("csrc/*.cpp") + _sources("csrc/*/cpu/*.cpp")
    define_macros = [("SCALEKIT_TORCH_VERSION", f'"{torch.__version__}"')]
    # -ffp-contract=off: no fused multiply-adds, so that IoUs round exactly as
    # torchvision's do and CPU and CUDA agree bit for bit.
    # -fopenmp: at::parallel_for is inlined from ATen's OpenMP header.
    cxx = ["-O3", "-fopenmp", "-ffp-contract=off"] + os.environ.get("SCALEKIT_EXTRA_CFLAGS", "").split()
    kwargs = dict(
        name="scalekit._C",
        sources=sources,
        include_dirs=[os.path.join(HERE, "csrc")],
        depends=_sources("csrc/**/*.h"),  # rebuilt when a header changes; shipped in an sdist
        define_macros=define_macros,
        extra_link_args=["-fopenmp"] + os.environ.get("SCALEKIT_EXTRA_LDFLAGS", "").split(),
    )
    if with_cuda:
        kwargs["sources"] += _sources("csrc/*/cuda/*.cu")
        kwargs["define_macros"] = define_macros + [("SCALEKIT_WITH_CUDA", None)]
        kwargs["extra_compile_args"] = {"cxx": cxx, "nvcc": ["-O3"]}
        return CUDAExtension(**kwargs)
    kwargs["extra_compile_args"] = {"cxx": cxx}
    return CppExtension(**kwargs)


# Name, version, dependencies, extras and licence: pyproject.toml.
setup(
    ext_modules=[_extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
