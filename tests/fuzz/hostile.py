"""Hostile inputs for the fuzz suite: hypothesis strategies over NaN/inf, empty, huge,
reversed, duplicate and wrong-dtype values, and a per-example time bound.

A fuzz test calls one public function with hostile input and accepts exactly two
outcomes: a result that meets the function's contract (the test checks a property of
it), or a clear error — a ``ValueError``/``TypeError`` whose message names the argument
(:func:`expect_clear`). Anything else fails: another exception type, a message that
names nothing, a call slower than its bound (:func:`time_bound`), a crash.

Register what a test covers with :func:`covers`; ``tests/fuzz/conftest.py`` prints, at
the end of the run, how many public functions the suite covered and how many examples
it ran. The budget is the hypothesis profile: ``ci`` (40 examples per test) in CI,
``HYPOTHESIS_PROFILE=thorough`` (2,000) by hand.

Example::

    from hypothesis import given
    from tests.fuzz.hostile import boxes, covers, expect_clear, time_bound
    from scalekit.boxes import box_area

    @covers(box_area)
    @given(b=boxes())
    def test_box_area(b):
        with time_bound(1.0):
            out = expect_clear(box_area, b, names=("boxes",))
        if out is not None:
            assert out.shape == b.shape[:1]
"""

from __future__ import annotations

import contextlib
import faulthandler
import math
import re
import time
from collections.abc import Callable, Iterable

import numpy as np
import torch
from hypothesis import strategies as st

__all__ = ["HOSTILE_FLOATS", "hostile_floats", "hostile_numbers", "hostile_ints", "boxes", "scores_like", "images",
           "segments", "expect_clear", "time_bound", "covers", "COVERED", "EXAMPLES", "TimeBoundExceeded"]

# Values that have broken detection code somewhere: not-a-number, infinities, signed
# zero, denormal and enormous magnitudes, 2**31 (int32 overflow), values just beside
# integers.
HOSTILE_FLOATS = (math.nan, math.inf, -math.inf, 0.0, -0.0, -1.0, 1e-30, 5e-324, 1e30, 2.0 ** 31, 2.0 ** 63,
                  0.5, 1.0 - 1e-12, -1e-12)

COVERED: set[str] = set()  # "module.name" of every public function a fuzz test covers
EXAMPLES = [0]  # examples run, all fuzz tests together (one list cell: mutable from the helpers)


class TimeBoundExceeded(AssertionError):
    """A call took longer than its :func:`time_bound`."""


def hostile_floats(*, finite_too: bool = True) -> st.SearchStrategy[float]:
    """Python floats from :data:`HOSTILE_FLOATS`, plus (``finite_too``) any float hypothesis draws."""
    special = st.sampled_from(HOSTILE_FLOATS)
    if not finite_too:
        return special
    return st.one_of(special, st.floats(allow_nan=True, allow_infinity=True, width=64))


def hostile_ints() -> st.SearchStrategy[int]:
    """Integers that break counts and sizes: negative, zero, huge, int32/int64 edges."""
    return st.one_of(st.sampled_from([0, -1, 1, 2 ** 31 - 1, 2 ** 31, 2 ** 63 - 1, -(2 ** 31)]),
                     st.integers(min_value=-10, max_value=10))


def hostile_numbers() -> st.SearchStrategy:
    """A number argument as a careless caller passes it: Python and numpy scalars, 0-d
    tensors, bools, strings and ``None`` (the last three must give a clear TypeError)."""
    f = hostile_floats()
    return st.one_of(
        f, hostile_ints(),
        f.map(np.float32), f.map(np.float64), hostile_ints().filter(lambda i: abs(i) < 2 ** 62).map(np.int64),
        f.map(lambda v: torch.tensor(v)),
        st.sampled_from([True, "0.5", None]),
    )


@st.composite
def boxes(draw, max_boxes: int = 8, *, dtypes=(torch.float32, torch.float64), wrong_shapes: bool = True,
          wrong_dtypes: bool = True) -> torch.Tensor:
    """``[N, 4]`` boxes as a careless caller has them: empty, NaN/inf coordinates,
    reversed corners, duplicate rows, huge coordinates; sometimes (``wrong_shapes``)
    ``[N, 3]``, ``[N]`` or ``[1, N, 4]``, and (``wrong_dtypes``) integer, float16
    or bool tensors."""
    n = draw(st.integers(0, max_boxes))
    coord = st.one_of(st.floats(-50, 250, allow_nan=False, width=32), st.sampled_from(HOSTILE_FLOATS))
    rows = []
    for _ in range(n):
        x1, y1 = draw(coord), draw(coord)
        size = st.one_of(st.floats(0, 120, width=32), st.sampled_from(HOSTILE_FLOATS))
        w, h = draw(size), draw(size)
        row = [x1, y1, x1 + w, y1 + h]
        if draw(st.booleans()) and rows and draw(st.booleans()):
            row = list(rows[-1])  # a duplicate
        if draw(st.integers(0, 7)) == 0:
            row = [row[2], row[3], row[0], row[1]]  # reversed corners
        rows.append(row)
    dtype = draw(st.sampled_from(dtypes))
    with np.errstate(all="ignore"):
        t = torch.tensor(rows, dtype=torch.float64).reshape(n, 4).to(dtype)
    if wrong_dtypes and draw(st.integers(0, 9)) == 0:
        t = t.nan_to_num(0.0, 0.0, 0.0).clamp(-1e6, 1e6).to(draw(st.sampled_from([torch.int64, torch.float16,
                                                                                 torch.bool])))
    if wrong_shapes and draw(st.integers(0, 9)) == 0:
        t = draw(st.sampled_from([t[:, :3], t.reshape(-1), t[None]]))
    return t


def scores_like(n: int) -> st.SearchStrategy[torch.Tensor]:
    """``[n]`` float32 scores with NaN, inf, negative and tied values."""
    value = st.one_of(st.floats(0, 1, width=32), st.sampled_from([math.nan, math.inf, -math.inf, -1.0, 0.0, 0.5]))
    return st.lists(value, min_size=n, max_size=n).map(lambda v: torch.tensor(v, dtype=torch.float32).reshape(n))


@st.composite
def images(draw, max_side: int = 48, *, channels=(1, 3), wrong: bool = True) -> torch.Tensor:
    """``[C, H, W]`` images: float in [0, 1], uint8, with NaN pixels, zero-sized; sometimes
    (``wrong``) ``[H, W]`` or ``[B, C, H, W]``."""
    c = draw(st.sampled_from(channels))
    h, w = draw(st.integers(0, max_side)), draw(st.integers(0, max_side))
    kind = draw(st.sampled_from(["float", "uint8", "nan", "float64"]))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2 ** 16)))
    img = torch.rand(c, h, w, generator=g)
    if kind == "uint8":
        img = (img * 255).to(torch.uint8)
    elif kind == "nan" and img.numel():
        img.view(-1)[0] = math.nan
    elif kind == "float64":
        img = img.double()
    if wrong and draw(st.integers(0, 9)) == 0:
        img = draw(st.sampled_from([img[0], img[None]]))
    return img


@st.composite
def segments(draw, max_segments: int = 6) -> torch.Tensor:
    """``[N, 2]`` temporal segments (start, end): empty, reversed, zero-length, NaN/inf, huge."""
    n = draw(st.integers(0, max_segments))
    t = st.one_of(st.floats(-5, 500, width=32), st.sampled_from(HOSTILE_FLOATS))
    rows = [[draw(t), draw(t)] for _ in range(n)]
    return torch.tensor(rows, dtype=torch.float64).reshape(n, 2)


def expect_clear(fn: Callable, *args, names: Iterable[str], errors=(ValueError, TypeError), **kwargs):
    """Call ``fn(*args, **kwargs)``: its result, or ``None`` when it raised one of
    ``errors`` whose message names one of ``names`` (the arguments the input was bad in).

    Any other exception propagates, and an error whose message names none of ``names``
    fails with the message shown: the caller could not tell what to fix.
    """
    EXAMPLES[0] += 1
    names = tuple(names)
    try:
        return fn(*args, **kwargs)
    except errors as exc:
        message = str(exc)
        if not any(re.search(rf"(?<![A-Za-z0-9_]){re.escape(n)}(?![A-Za-z0-9_])", message) for n in names):
            raise AssertionError(f"{getattr(fn, '__qualname__', fn)} raised {type(exc).__name__} naming none of "
                                 f"{names}: {message!r}") from exc
        return None


@contextlib.contextmanager
def time_bound(seconds: float, *, hard_factor: float = 20.0):
    """Fail (:class:`TimeBoundExceeded`) when the block takes longer than ``seconds``.

    A compiled kernel cannot be interrupted from Python, so the bound is checked when
    the block returns; a true hang is stopped by :mod:`faulthandler`, which dumps every
    thread's stack and exits the process after ``hard_factor * seconds`` — a hung fuzz
    test costs CI seconds, not its whole time limit.
    """
    faulthandler.dump_traceback_later(seconds * hard_factor, exit=True)
    start = time.perf_counter()
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()
    took = time.perf_counter() - start
    if took > seconds:
        raise TimeBoundExceeded(f"took {took:.2f} s, bound {seconds:.2f} s")


def covers(*functions: Callable) -> Callable:
    """Mark a test as covering these public functions (counted in the run's summary)."""
    for f in functions:
        COVERED.add(f"{f.__module__}.{getattr(f, '__qualname__', f.__name__)}")

    def mark(test):
        return test
    return mark
