"""A small progress line on stderr for long calls (pyramid inference over many
images, evaluation), with no dependency: ``progress(iterable)`` yields what the
iterable yields and redraws ``desc: done/total [elapsed, rate]`` at most twice
a second, and once more at the end."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator

__all__ = ["progress"]


def progress(iterable: Iterable, total: int | None = None, desc: str = "", enabled: bool = True,
             *, file=None, min_interval: float = 0.5) -> Iterator:
    """Yield the items of ``iterable``, writing a progress line to stderr when ``enabled``.

    ``total`` defaults to ``len(iterable)`` where that exists. The line is
    redrawn in place (``\\r``) at most every ``min_interval`` seconds and
    finished with a newline when the iterable is exhausted.

    Example:
        >>> import io
        >>> out = io.StringIO()
        >>> list(progress(range(3), desc="images", file=out))
        [0, 1, 2]
        >>> out.getvalue().rsplit("\\r", 1)[-1].split(" [")[0]
        'images: 3/3'
    """
    if not enabled:
        yield from iterable
        return
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    file = file if file is not None else sys.stderr
    start = last = time.monotonic()
    done = 0

    def draw(now: float) -> None:
        elapsed = now - start
        rate = f"{done / elapsed:.2f}/s" if elapsed > 0 else "-"
        count = f"{done}/{total}" if total is not None else f"{done}"
        file.write(f"\r{desc + ': ' if desc else ''}{count} [{elapsed:.1f}s, {rate}]")
        file.flush()

    draw(start)
    for item in iterable:
        yield item
        done += 1
        now = time.monotonic()
        if now - last >= min_interval:
            draw(now)
            last = now
    draw(time.monotonic())
    file.write("\n")
    file.flush()
