"""Proposal recall by object size, as the recall analyses of SNIP (thesis
§2.7.2) and SNIPER (§3.4.1)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from scalekit.boxes import box_iou

__all__ = ["proposal_recall"]

DEFAULT_SIZE_BINS = ((0, 25), (25, 50), (50, 100), (100, 200), (200, 300))


def _best_overlaps(props: torch.Tensor, gts: torch.Tensor) -> np.ndarray:
    """One-to-one greedy matching (Detectron's): repeatedly pair the ground
    truth and proposal of highest IoU and remove both. IoU of each ground truth."""
    m = gts.shape[0]
    best = np.zeros(m)
    if m == 0 or props.shape[0] == 0:
        return best
    iou = box_iou(props.double(), gts.double()).nan_to_num(0.0).numpy()
    for _ in range(min(m, props.shape[0])):
        p, g = np.unravel_index(np.argmax(iou), iou.shape)
        if iou[p, g] <= 0:
            break
        best[g] = iou[p, g]
        iou[p, :] = -1
        iou[:, g] = -1
    return best


def _boxes(value, name: str) -> torch.Tensor:
    t = torch.as_tensor(value.detach() if hasattr(value, "detach") else value, dtype=torch.float64)
    if t.numel() == 0:
        return t.reshape(0, 4)
    if t.ndim != 2 or t.shape[1] != 4:
        raise ValueError(f"{name} must have shape [N, 4] (x1, y1, x2, y2), got {tuple(t.shape)}")
    return t


def proposal_recall(proposals: Sequence, gt_boxes: Sequence, top_k: int | None = 1000,
                    size_bins=DEFAULT_SIZE_BINS, iou_thresholds=np.arange(0.5, 0.951, 0.05)) -> dict:
    """Average recall of proposals, and recall at IoU 0.5 per object-size bin.

    Args:
        proposals: per image, ``[N, 4]`` boxes in decreasing score, or a dict
            ``{"boxes": [N, 4], "scores": [N]}`` (sorted here).
        gt_boxes: per image, ``[M, 4]`` ground-truth boxes, in the same
            (original-image) pixels.
        top_k: proposals per image considered, ``>= 0`` (``None``: all). A
            negative count raises (it is not a Python slice that drops the last).
        size_bins: ``(lo, hi)`` bins of object size ``sqrt(area)`` in pixels;
            a box falls in ``lo <= size < hi``. The default are SNIP's.
        iou_thresholds: thresholds averaged into AR (COCO's 0.5:0.05:0.95).

    Returns:
        A dict with ``"AR"`` (mean recall over ``iou_thresholds``), ``"AR50"``,
        ``"AR75"``, ``"recall"`` (per threshold), ``"recall_by_size"``
        (``{(lo, hi): recall at IoU 0.5}``, NaN for an empty bin), ``"num_gt"``
        and ``"num_gt_by_size"``. Ground truth and proposals are matched one to
        one (Detectron's greedy matching).

    Example:
        >>> import torch
        >>> gt = [torch.tensor([[0.0, 0, 20, 20], [50, 50, 150, 150]])]
        >>> props = [torch.tensor([[0.0, 0, 20, 20], [60, 60, 150, 150]])]
        >>> r = proposal_recall(props, gt)
        >>> r["AR50"], r["recall_by_size"][(0, 25)], r["recall_by_size"][(100, 200)]
        (1.0, 1.0, 1.0)
    """
    if len(proposals) != len(gt_boxes):
        raise ValueError(f"proposals and gt_boxes must have one entry per image, got {len(proposals)} "
                         f"and {len(gt_boxes)}")
    if top_k is not None:
        if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)):
            raise TypeError(f"top_k must be an int >= 0 or None, got {type(top_k).__name__} {top_k!r}")
        if top_k < 0:
            raise ValueError(f"top_k must be >= 0 (proposals per image) or None (all), got {top_k}")
        top_k = int(top_k)
    thresholds = np.asarray(iou_thresholds, dtype=np.float64).reshape(-1)
    if thresholds.size == 0 or not ((thresholds >= 0) & (thresholds <= 1)).all():
        raise ValueError(f"iou_thresholds must be a non-empty sequence of IoUs in [0, 1], got {thresholds.tolist()}")
    bins = []
    for b in size_bins:
        b = tuple(b) if isinstance(b, (tuple, list)) else b
        if not isinstance(b, tuple) or len(b) != 2 or not (b[0] < b[1]):
            raise ValueError(f"size_bins must be (lo, hi) pairs with lo < hi, got {b!r}")
        bins.append(b)
    overlaps, sizes = [], []
    for i, (p, g) in enumerate(zip(proposals, gt_boxes)):
        if isinstance(p, dict):
            if "boxes" not in p or "scores" not in p:
                raise ValueError(f"proposals[{i}]: a dict of proposals must have 'boxes' and 'scores', got {sorted(p)}")
            boxes = torch.as_tensor(p["boxes"], dtype=torch.float64).reshape(-1, 4)
            scores = torch.as_tensor(p["scores"], dtype=torch.float64).reshape(-1)
            if scores.shape[0] != boxes.shape[0]:
                raise ValueError(f"proposals[{i}]: {boxes.shape[0]} boxes but {scores.shape[0]} scores")
            p = boxes[torch.argsort(scores, descending=True, stable=True)]
        p, g = _boxes(p, f"proposals[{i}]"), _boxes(g, f"gt_boxes[{i}]")
        if not (torch.isfinite(p).all() and torch.isfinite(g).all()):
            raise ValueError(f"image {i}: proposals and gt_boxes must be finite")
        if top_k is not None:
            p = p[:top_k]
        overlaps.append(_best_overlaps(p, g))
        sizes.append(((g[:, 2] - g[:, 0]).clamp(min=0) * (g[:, 3] - g[:, 1]).clamp(min=0)).sqrt().numpy())
    best = np.concatenate(overlaps) if overlaps else np.zeros(0)
    size = np.concatenate(sizes) if sizes else np.zeros(0)
    recall = np.array([(best >= t).mean() if best.size else 0.0 for t in thresholds])

    def at(t):
        return float((best >= t).mean()) if best.size else 0.0

    by_size, count = {}, {}
    for lo, hi in bins:
        inside = (size >= lo) & (size < hi)
        count[(lo, hi)] = int(inside.sum())
        by_size[(lo, hi)] = float((best[inside] >= 0.5).mean()) if inside.any() else float("nan")
    return {"AR": float(recall.mean()), "AR50": at(0.5), "AR75": at(0.75), "recall": recall,
            "recall_by_size": by_size, "num_gt": int(best.size), "num_gt_by_size": count}
