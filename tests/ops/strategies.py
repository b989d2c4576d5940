"""Hypothesis strategies for boxes: integer grids (exact IoUs, ties, identical
boxes), floats, degenerate and zero-area boxes, huge coordinates, empty sets."""

from __future__ import annotations

import torch
from hypothesis import strategies as st


@st.composite
def boxes(draw, min_n=0, max_n=40, dtype=torch.float32):
    n = draw(st.integers(min_n, max_n))
    kind = draw(st.sampled_from(["grid", "float", "degenerate", "huge", "negative"]))
    if kind == "grid":  # small integer boxes: exact arithmetic, many ties and duplicates
        v = st.integers(0, 12)
        xy = draw(st.lists(st.tuples(v, v), min_size=n, max_size=n))
        wh = draw(st.lists(st.tuples(st.integers(0, 8), st.integers(0, 8)), min_size=n, max_size=n))
    elif kind == "degenerate":  # widths and heights may be zero or negative
        v = st.integers(-4, 10)
        xy = draw(st.lists(st.tuples(v, v), min_size=n, max_size=n))
        wh = draw(st.lists(st.tuples(st.integers(-3, 6), st.integers(-3, 6)), min_size=n, max_size=n))
    else:
        scale = {"float": 100.0, "huge": 1e6, "negative": -100.0}[kind]
        f = st.floats(0, 1, width=32)
        xy = [(a * scale, b * scale) for a, b in draw(st.lists(st.tuples(f, f), min_size=n, max_size=n))]
        wh = [(a * abs(scale) / 3, b * abs(scale) / 3)
              for a, b in draw(st.lists(st.tuples(f, f), min_size=n, max_size=n))]
    xy = torch.tensor(xy, dtype=torch.float64).reshape(n, 2)
    wh = torch.tensor(wh, dtype=torch.float64).reshape(n, 2)
    return torch.cat([xy, xy + wh], dim=1).to(dtype)


@st.composite
def distinct_scores(draw, n, dtype=torch.float32):
    """A random permutation of n distinct scores in (0, 1]."""
    perm = draw(st.permutations(range(n)))
    return (torch.tensor(perm, dtype=torch.float64).reshape(n) + 1).div(n).to(dtype)


@st.composite
def tied_scores(draw, n, dtype=torch.float32):
    """Scores from a few values, so that many boxes tie."""
    vals = draw(st.lists(st.sampled_from([0.1, 0.25, 0.5, 0.75, 0.9]), min_size=n, max_size=n))
    return torch.tensor(vals, dtype=torch.float64).reshape(n).to(dtype)


iou_thresholds = st.one_of(
    st.sampled_from([0.0, 0.3, 0.5, 0.7, 1.0, 0.2, 1 / 3, 0.25]),
    st.floats(-0.5, 1.2, allow_nan=False),
)
