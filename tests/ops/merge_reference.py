"""Slow, obviously-correct references for non-maximum merging (greedy NMM and
NMM), written from the definitions in ``scalekit/ops/_merge.py``: one Python
loop over the boxes, every pair tested. Arithmetic is done op by op with numpy
scalars in the precision the kernels use (float32, or float64 for float64
boxes), and the threshold is rounded to that precision, so results compare
exactly."""

from __future__ import annotations

import numpy as np
import torch


def _acc(dtype: torch.dtype):
    return np.float64 if dtype == torch.float64 else np.float32


def _metric(a, b, kind: str, t):
    w = max(t(0), min(a[2], b[2]) - max(a[0], b[0]))
    h = max(t(0), min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    denom = area_a + area_b - inter if kind == "iou" else min(area_a, area_b)
    return inter / denom if denom > 0 else t(0)


def _setup(boxes, scores, idxs, match_threshold):
    t = _acc(boxes.dtype)
    b = [tuple(t(v) for v in row) for row in boxes.double().tolist()]
    s = [t(v) for v in scores.double().tolist()]
    cat = [0] * len(b) if idxs is None else [int(v) for v in idxs]
    order = sorted(range(len(b)), key=lambda i: (-s[i], *b[i], i))
    return t, b, s, cat, order, t(match_threshold)


def _merged(keeper, candidates, b, kind, thr, t):
    box = b[keeper]
    for j in candidates:
        if _metric(box, b[j], kind, t) >= thr:
            box = (min(box[0], b[j][0]), min(box[1], b[j][1]), max(box[2], b[j][2]), max(box[3], b[j][3]))
    return box


def _result(groups, b, s, kind, thr, t, boxes, scores):
    keep = torch.tensor([k for k, _ in groups], dtype=torch.int64)
    merged = torch.tensor([[float(v) for v in _merged(k, c, b, kind, thr, t)] for k, c in groups],
                          dtype=torch.float64).reshape(-1, 4).to(boxes.dtype)
    return keep, merged, scores[keep]


def ref_greedy_nmm(boxes, scores, idxs=None, match_threshold=0.5, metric="iou"):
    """Keepers in visiting order take every untaken box of their category that matches."""
    t, b, s, cat, order, thr = _setup(boxes, scores, idxs, match_threshold)
    taken = [False] * len(b)
    groups = []
    for i in order:
        if taken[i]:
            continue
        taken[i] = True
        candidates = [j for j in order if not taken[j] and cat[j] == cat[i] and _metric(b[i], b[j], metric, t) >= thr]
        for j in candidates:
            taken[j] = True
        groups.append((i, candidates))
    return _result(groups, b, s, metric, thr, t, boxes, scores)


def _dominates(i, j, b, s):
    return s[i] > s[j] or (s[i] == s[j] and not b[i] < b[j])  # tuples compare lexicographically


def ref_nmm(boxes, scores, idxs=None, match_threshold=0.5, metric="iou"):
    """Every box in visiting order takes, by index, the untaken matching boxes it dominates into its group."""
    t, b, s, cat, order, thr = _setup(boxes, scores, idxs, match_threshold)
    group = [None] * len(b)
    groups = []
    for i in order:
        if group[i] is None:
            group[i] = len(groups)
            groups.append((i, []))
        for j in range(len(b)):
            if (group[j] is None and cat[j] == cat[i] and _dominates(i, j, b, s)
                    and _metric(b[i], b[j], metric, t) >= thr):
                group[j] = group[i]
                groups[group[i]][1].append(j)
    return _result(groups, b, s, metric, thr, t, boxes, scores)
