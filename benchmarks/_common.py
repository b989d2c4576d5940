"""Timing and table printing shared by the benchmark suites."""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable

import torch

# Set by ``python -m benchmarks --device cpu|cuda``: only that device's rows.
ONLY_DEVICE: str | None = None
# Every row printed; with JSON_PATH set (``python -m benchmarks --json PATH``)
# also written there after each row, so that a run cut short keeps its rows.
ROWS: list[dict] = []
JSON_PATH: str | None = None


def devices() -> list[torch.device]:
    """The CPU, and CUDA where a GPU and scalekit's CUDA kernels are present
    (less what ``--device`` leaves out)."""
    from scalekit import _ext

    found = [torch.device("cpu")]
    if torch.cuda.is_available() and _ext.has_cuda_kernels():
        found.append(torch.device("cuda"))
    return [d for d in found if ONLY_DEVICE in (None, d.type)]


def cuda_device() -> torch.device | None:
    """The CUDA device when its rows are to be measured, else None."""
    return next((d for d in devices() if d.type == "cuda"), None)


def write_json(path: str | None = None) -> None:
    path = path or JSON_PATH
    if path is None:
        return
    with open(path, "w") as f:
        json.dump({"torch": torch.__version__,
                   "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
                   "rows": ROWS}, f, indent=1)


def measure(fn: Callable[[], object], device: torch.device, *, min_time: float = 0.3,
            max_repeat: int = 50) -> float:
    """Median wall time of ``fn()`` in seconds, after one warm-up call."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    fn()
    sync()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_repeat and (len(times) < 3 or time.perf_counter() - start < min_time):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _fmt_time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:8.3f} s "
    if seconds >= 1e-3:
        return f"{seconds * 1e3:8.2f} ms"
    return f"{seconds * 1e6:8.1f} us"


class Table:
    """Prints rows as they are measured, so long runs show progress."""

    def __init__(self, title: str, peer: str) -> None:
        self.title, self.peer = title, peer
        print(f"\n{title}", flush=True)
        header = f"{'case':<58} {'device':<6} {'scalekit':>11} {peer:>11} {'ratio':>8}"
        print(header)
        print("-" * len(header), flush=True)

    def row(self, case: str, device: torch.device, ours: float, theirs: float | None) -> None:
        peer = _fmt_time(theirs) if theirs is not None else f"{'-':>11}"
        ratio = f"{theirs / ours:7.1f}x" if theirs is not None else f"{'-':>8}"
        print(f"{case:<58} {device.type:<6} {_fmt_time(ours):>11} {peer:>11} {ratio:>8}")
        sys.stdout.flush()
        ROWS.append({"table": self.title, "case": case, "device": device.type, "ours_s": ours,
                     "peer": self.peer, "peer_s": theirs, "ratio": theirs / ours if theirs is not None else None})
        write_json()

    def error(self, case: str, device: torch.device, exc: BaseException) -> None:
        """A row that could not be measured: says why, and the suite goes on."""
        message = f"{type(exc).__name__}: {exc}".splitlines()[0][:160]
        print(f"{case:<58} {device.type:<6} failed: {message}")
        sys.stdout.flush()
        ROWS.append({"table": self.title, "case": case, "device": device.type, "error": message})
        write_json()
