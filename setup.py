"""Build scalekit and its compiled op library ``scalekit._C``.

CUDA kernels are built only when ``FORCE_CUDA=1`` is set or a GPU is visible,
so that CPU-only machines (and CI) build in seconds.  Build with
``pip install --no-build-isolation -e .`` so that the extension is compiled
against the torch that is installed, not against a temporary copy.
"""

import glob
import os

from setuptools import find_packages, setup

import torch
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

HERE = os.path.dirname(os.path.abspath(__file__))


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
    cxx = ["-O3", "-fopenmp", "-ffp-contract=off"]
    kwargs = dict(
        name="scalekit._C",
        sources=sources,
        include_dirs=[os.path.join(HERE, "csrc")],
        define_macros=define_macros,
        extra_link_args=["-fopenmp"],
    )
    if with_cuda:
        kwargs["sources"] += _sources("csrc/*/cuda/*.cu")
        kwargs["define_macros"] = define_macros + [("SCALEKIT_WITH_CUDA", None)]
        kwargs["extra_compile_args"] = {"cxx": cxx, "nvcc": ["-O3"]}
        return CUDAExtension(**kwargs)
    kwargs["extra_compile_args"] = {"cxx": cxx}
    return CppExtension(**kwargs)


setup(
    name="scalekit",
    version="0.1.0",
    description="Building blocks for detecting objects and actions under extreme scale variation",
    packages=find_packages(include=["scalekit", "scalekit.*"]),
    python_requires=">=3.10",
    install_requires=["torch>=2.4", "numpy"],
    extras_require={
        "test": ["torchvision", "pycocotools", "hypothesis", "pytest"],
        "docs": ["sphinx", "furo"],
        "video": ["opencv-python-headless", "av"],
    },
    ext_modules=[_extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
    zip_safe=False,
)
