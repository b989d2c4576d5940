"""Timing and table printing shared by the benchmark suites."""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable

import torch


def devices() -> list[torch.device]:
    from scalekit import _ext

    found = [torch.device("cpu")]
    if torch.cuda.is_available() and _ext.has_cuda_kernels():
        found.append(torch.device("cuda"))
    return found


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
        self.peer = peer
        print(f"\n{title}", flush=True)
        header = f"{'case':<58} {'device':<6} {'scalekit':>11} {peer:>11} {'ratio':>8}"
        print(header)
        print("-" * len(header), flush=True)

    def row(self, case: str, device: torch.device, ours: float, theirs: float | None) -> None:
        peer = _fmt_time(theirs) if theirs is not None else f"{'-':>11}"
        ratio = f"{theirs / ours:7.1f}x" if theirs is not None else f"{'-':>8}"
        print(f"{case:<58} {device.type:<6} {_fmt_time(ours):>11} {peer:>11} {ratio:>8}")
        sys.stdout.flush()
