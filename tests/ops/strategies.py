"""Hypothesis strategies for boxes: integer grids (exact IoUs, ties, identical
boxes), floats, degenerate and zero-area boxes, huge (1e6) and 1e9-pixel
coordinates, empty sets; and for the RoI ops: zero-size feature maps, zero-size,
reversed and huge boxes, offsets of 1e6, non-contiguous and channels-last inputs."""

from __future__ import annotations

import torch
from hypothesis import strategies as st


@st.composite
def boxes(draw, min_n=0, max_n=40, dtype=torch.float32):
    n = draw(st.integers(min_n, max_n))
    kind = draw(st.sampled_from(["grid", "float", "degenerate", "huge", "negative", "1e9"]))
    if kind == "grid":  # small integer boxes: exact arithmetic, many ties and duplicates
        v = st.integers(0, 12)
        xy = draw(st.lists(st.tuples(v, v), min_size=n, max_size=n))
        wh = draw(st.lists(st.tuples(st.integers(0, 8), st.integers(0, 8)), min_size=n, max_size=n))
    elif kind == "degenerate":  # widths and heights may be zero or negative
        v = st.integers(-4, 10)
        xy = draw(st.lists(st.tuples(v, v), min_size=n, max_size=n))
        wh = draw(st.lists(st.tuples(st.integers(-3, 6), st.integers(-3, 6)), min_size=n, max_size=n))
    else:
        scale = {"float": 100.0, "huge": 1e6, "negative": -100.0, "1e9": 1e9}[kind]
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


# Coordinates for RoIs: on the map, far off it, 1e6 and 1e9 pixels away, and so
# far apart (1e308) that the box size overflows.
roi_coordinates = st.one_of(
    st.floats(-12, 12, width=32),
    st.sampled_from([0.0, -1.0, -0.5, 1e6, -1e6, 1e9, -1e9, 5e8, 1e308, -1e308]),
    st.floats(-1e9, 1e9, width=32),
)


def layout(x: torch.Tensor, kind: str) -> torch.Tensor:
    """The same values as ``x`` ([N, C, H, W]) in another memory layout."""
    if kind == "channels_last":
        return x.contiguous(memory_format=torch.channels_last)
    if kind == "transposed":  # H and W strides swapped
        return x.transpose(2, 3).contiguous().transpose(2, 3)
    if kind == "strided":  # every other element of a larger tensor
        big = torch.zeros(*x.shape[:3], 2 * x.shape[3], dtype=x.dtype)
        big[..., ::2] = x
        return big[..., ::2]
    return x


layouts = st.sampled_from(["contiguous", "channels_last", "transposed", "strided"])


@st.composite
def roi_cases(draw, channels_per_bin=1, max_k=6):
    """(input [N, C, H, W], rois [K, 5], output size, spatial scale, layout) at the edges:
    maps of zero height or width, zero-size and reversed boxes, 1e9-pixel coordinates."""
    n = draw(st.integers(1, 2))
    h, w = draw(st.sampled_from([0, 1, 2, 5, 9])), draw(st.sampled_from([0, 1, 3, 8]))
    size = draw(st.sampled_from([1, 2, 3]))
    k = draw(st.integers(0, max_k))
    rois = []
    for _ in range(k):
        x1, y1 = draw(roi_coordinates), draw(roi_coordinates)
        shape = draw(st.sampled_from(["any", "zero", "reversed", "point"]))
        if shape == "zero":
            x2, y2 = x1, draw(roi_coordinates)
        elif shape == "point":
            x2, y2 = x1, y1
        else:
            x2, y2 = draw(roi_coordinates), draw(roi_coordinates)
            if shape != "reversed":
                x1, x2, y1, y2 = min(x1, x2), max(x1, x2), min(y1, y2), max(y1, y2)
        rois.append([float(draw(st.integers(0, n - 1))), x1, y1, x2, y2])
    seed = draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, channels_per_bin * size * size, h, w, generator=g, dtype=torch.float64)
    rois = torch.tensor(rois, dtype=torch.float64).reshape(k, 5)
    scale = draw(st.sampled_from([1.0, 0.5, 1 / 16]))
    return x, rois, size, scale, draw(layouts)


offsets = st.one_of(st.floats(-2, 2), st.sampled_from([0.0, 1e6, -1e6, 1e3]))
