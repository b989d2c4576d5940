"""Progress of long library calls (pyramid inference over a dataset, evaluation,
proposal mining): one bar for the whole library and the examples.

Library functions take ``progress: bool = False`` and wrap their loop in
:func:`progress`; nothing is printed unless asked.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterable, Iterator

__all__ = ["Progress", "progress"]


class Progress:
    """Wrap an iterable: ``[####....] 12/40 3.1 it/s ETA 0:09 loss 1.234``.

    Redraws in place on a terminal; elsewhere (logs, CI) prints a line every
    ``every`` seconds and at the end. ``quiet=True`` prints nothing (non-zero
    ranks under ``torchrun``).
    """

    def __init__(self, iterable: Iterable, total: int | None = None, desc: str = "", *, every: float = 10.0,
                 quiet: bool = False, stream=None) -> None:
        self.iterable, self.desc, self.every, self.quiet = iterable, desc, every, quiet
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.postfix = ""

    def set(self, **values) -> None:
        """Values shown after the bar (``loss=1.23``)."""
        self.postfix = " ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items())

    def _line(self, i: int, elapsed: float) -> str:
        rate = i / elapsed if elapsed > 0 else 0.0
        if self.total:
            done = int(20 * i / self.total)
            eta = (self.total - i) / rate if rate > 0 else float("nan")
            eta_s = "?" if math.isnan(eta) else time.strftime("%M:%S", time.gmtime(eta)) if eta < 3600 else f"{eta / 3600:.1f}h"
            bar = f"[{'#' * done}{'.' * (20 - done)}] {i}/{self.total}"
        else:
            bar, eta_s = f"{i}", "?"
        return f"{self.desc} {bar} {rate:.2f} it/s ETA {eta_s} {self.postfix}".strip()

    def __iter__(self) -> Iterator:
        start = last = time.perf_counter()
        i = printed = 0
        for i, item in enumerate(self.iterable, 1):
            yield item
            now = time.perf_counter()
            if not self.quiet and (self.tty or now - last >= self.every):
                self.stream.write(("\r" if self.tty else "") + self._line(i, now - start) + ("" if self.tty else "\n"))
                self.stream.flush()
                last, printed = now, i
        if self.quiet:
            return
        if self.tty:  # the bar is on screen: end it with the final numbers
            self.stream.write("\r" + self._line(i, time.perf_counter() - start) + "\n")
        elif printed != i or i == 0:  # the last item was not printed yet
            self.stream.write(self._line(i, time.perf_counter() - start) + "\n")
        self.stream.flush()


def progress(iterable: Iterable, enabled: bool = True, desc: str = "", total: int | None = None) -> Iterable:
    """``iterable`` itself when ``enabled`` is false, else wrapped in a :class:`Progress` bar on stderr.

    Example:
        >>> list(progress(range(3), enabled=False))
        [0, 1, 2]
    """
    return Progress(iterable, total=total, desc=desc) if enabled else iterable
