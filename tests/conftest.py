import os

import pytest
import torch
from hypothesis import HealthCheck, settings

from scalekit import _ext

# CI: bounded examples, no deadline (2 shared cores time badly), reproducible.
settings.register_profile(
    "ci", max_examples=40, deadline=None, derandomize=True, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
# compute-sanitizer runs (benchmarks/gpu_check.sh): every kernel launch is slow there.
settings.register_profile(
    "sanitize", max_examples=10, deadline=None, derandomize=True, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=100, deadline=None, print_blob=True)
settings.register_profile("thorough", max_examples=2000, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def cuda_ready() -> bool:
    return torch.cuda.is_available() and _ext.has_cuda_kernels()


def pytest_collection_modifyitems(config, items):
    skip_cuda = pytest.mark.skip(reason="needs a CUDA device and scalekit built with CUDA kernels")
    for item in items:
        if "cuda" in item.keywords and not cuda_ready():
            item.add_marker(skip_cuda)


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


@pytest.fixture(params=DEVICES)
def device(request):
    return torch.device(request.param)
