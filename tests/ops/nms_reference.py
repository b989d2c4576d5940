"""Slow, obviously-correct references for the NMS family, written from the
definitions (greedy NMS; Soft-NMS as in Bodla et al. 2017, Algorithm 1), one
Python loop per selected box. Arithmetic is done op by op in the precision the
kernels use (float32, or float64 for float64 boxes) so results compare exactly."""

from __future__ import annotations

import math

import torch


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def iou_row(boxes: torch.Tensor, i: int, off: float) -> torch.Tensor:
    """IoU of box i with every box: inter / (area_i + area_j - inter)."""
    x1, y1, x2, y2 = boxes.unbind(1)
    area = (x2 - x1 + off) * (y2 - y1 + off)
    w = (torch.minimum(x2[i], x2) - torch.maximum(x1[i], x1) + off).clamp(min=0)
    h = (torch.minimum(y2[i], y2) - torch.maximum(y1[i], y1) + off).clamp(min=0)
    inter = w * h
    return inter / (area[i] + area - inter)


def ref_nms(boxes, scores, iou_threshold, idxs=None, pixel_offset=0.0) -> torch.Tensor:
    b = boxes.cpu().to(acc_dtype(boxes.dtype))
    s = [float(v) for v in scores.cpu()]
    cats = None if idxs is None else [int(v) for v in idxs.cpu()]
    n = len(s)
    removed = [False] * n
    keep = []
    for i in sorted(range(n), key=lambda k: (-s[k], k)):
        if removed[i]:
            continue
        keep.append(i)
        iou = iou_row(b, i, pixel_offset).tolist()
        for j in range(n):
            if cats is None or cats[j] == cats[i]:
                removed[j] = removed[j] or (j != i and iou[j] > iou_threshold)
    return torch.tensor(keep, dtype=torch.int64)


def ref_soft_nms(boxes, scores, iou_threshold=0.3, sigma=0.5, score_threshold=0.001,
                 method="linear", idxs=None, pixel_offset=0.0):
    acc = acc_dtype(boxes.dtype)
    b = boxes.cpu().to(acc)
    s = scores.cpu().to(acc).clone()
    cats = None if idxs is None else [int(v) for v in idxs.cpu()]
    n = len(s)
    alive = [not (float(s[i]) < score_threshold) for i in range(n)]
    keep, kept = [], []
    while any(alive):
        i = max((k for k in range(n) if alive[k]), key=lambda k: (float(s[k]), -k))
        keep.append(i)
        kept.append(s[i].clone())
        alive[i] = False
        iou = iou_row(b, i, pixel_offset)
        for j in range(n):
            if not alive[j] or (cats is not None and cats[j] != cats[i]):
                continue
            o = iou[j]
            if method == "gaussian":
                if not o > 0:
                    continue
                if acc == torch.float64:
                    weight = torch.tensor(math.exp(-(float(o) * float(o)) / sigma), dtype=acc)
                else:
                    weight = torch.exp(-(o * o) / torch.tensor(sigma, dtype=acc))
            elif not float(o) > iou_threshold:
                continue
            elif method == "linear":
                weight = 1 - o
            else:  # hard
                alive[j] = False
                continue
            if float(s[j]) < 0:  # a negative score moves away from 0 (a decay never raises it)
                lowest = torch.finfo(acc).min
                s[j] = torch.clamp(s[j] * (2 - weight), min=lowest)
            else:
                s[j] = s[j] * weight
            if float(s[j]) < score_threshold:
                alive[j] = False
    kept_scores = torch.stack(kept) if kept else torch.empty(0, dtype=acc)
    return torch.tensor(keep, dtype=torch.int64), kept_scores.to(scores.dtype)
