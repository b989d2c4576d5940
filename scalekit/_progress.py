"""Progress of long library calls, one helper for every layer.

A long call takes ``progress=`` and wraps its loop in :func:`track`::

    for item in track(items, progress, desc="tiou_map"):
        ...

``progress`` is ``False``/``None`` (silent, the default everywhere), ``True``
(a line on stderr: redrawn in place on a terminal, else one line every
``every`` seconds and one at the end, so that logs stay short) or a callable
``progress(done, total)`` called after every item (``total`` may be None), for
a user's own bar (tqdm, a GUI, a log).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator

__all__ = ["track", "check_progress"]


def check_progress(progress, name: str = "progress") -> None:
    """A TypeError unless ``progress`` is None, a bool or a callable."""
    if progress is not None and not isinstance(progress, bool) and not callable(progress):
        raise TypeError(f"{name} must be False, True or a callable progress(done, total), "
                        f"got {type(progress).__name__}")


def _line(desc: str, done: int, total: int | None, elapsed: float) -> str:
    rate = done / elapsed if elapsed > 0 else 0.0
    if total:
        left = (total - done) / rate if rate > 0 else float("nan")
        eta = "?" if left != left else time.strftime("%H:%M:%S", time.gmtime(left))
        return f"{desc}: {done}/{total} ({100 * done / total:.0f}%) {rate:.3g}/s ETA {eta}"
    return f"{desc}: {done} {rate:.3g}/s"


def track(iterable: Iterable, progress: bool | Callable | None = False, *, total: int | None = None,
          desc: str = "", every: float = 10.0, stream=None) -> Iterator:
    """Yield the items of ``iterable``, reporting progress as ``progress`` says.

    Args:
        iterable: the loop's items.
        progress: ``False``/``None``, ``True`` or ``callable(done, total)``.
        total: number of items (default ``len(iterable)`` when it has one).
        desc: the name shown (the call's).
        every: seconds between two lines when the stream is not a terminal.
        stream: where ``True`` writes (default ``sys.stderr``).

    Example:
        >>> seen = []
        >>> list(track([10, 20], lambda done, total: seen.append((done, total))))
        [10, 20]
        >>> seen
        [(1, 2), (2, 2)]
    """
    check_progress(progress)
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)
    if not progress:
        yield from iterable
        return
    if progress is not True:
        done = 0
        for item in iterable:
            yield item
            done += 1
            progress(done, total)
        return
    out = stream if stream is not None else sys.stderr
    tty = hasattr(out, "isatty") and out.isatty()
    start = last = time.perf_counter()
    done = printed = 0
    for item in iterable:
        yield item
        done += 1
        now = time.perf_counter()
        if tty or now - last >= every:
            out.write(("\r" if tty else "") + _line(desc, done, total, now - start) + ("" if tty else "\n"))
            out.flush()
            last, printed = now, done
    if tty or printed != done or done == 0:
        out.write(("\r" if tty else "") + _line(desc, done, total, time.perf_counter() - start) + "\n")
        out.flush()
