"""Temporal action detection: clips from per-chunk scores, mid-point-hit mAP
and temporal-IoU mAP (MSB-RNN, thesis §5.4: MPII Cooking 2 and MERL Shopping).

Detections and ground truth are per-video dicts::

    {video_id: {"labels": int[N], "segments": float[N, 2], "scores": float[N]}}

(ground truth without ``"scores"``), with numpy arrays, torch tensors or lists.
Segments are ``(start, end)`` in frames (or seconds: any unit, the same on
both sides).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from scalekit.evaluation._match import cross_pairs, greedy_match
from scalekit.evaluation._segments import Segments, check_classes, read_side

__all__ = [
    "average_precision",
    "clips_from_scores",
    "clips_to_detections",
    "midpoint_map",
    "tiou_map",
]

AP_METHODS = ("non_interpolated", "voc_all_point", "11_point")


def average_precision(tp, num_positives: int, method: str = "non_interpolated") -> float:
    """Average precision of a ranked list of hits.

    Args:
        tp: ``[N]`` bool, whether each detection, in decreasing score, is a true positive.
        num_positives: number of ground-truth instances (``> 0``).
        method: ``"non_interpolated"`` (sum of the precision at each true
            positive / ``num_positives``: THUMOS' updated evaluator and its
            ports), ``"voc_all_point"`` (area under the monotone precision
            envelope: ActivityNet, VOC 2010+) or ``"11_point"`` (mean of the
            envelope at recall 0, 0.1, ..., 1: THUMOS14's official tool, VOC 2007).

    Returns:
        The AP in ``[0, 1]``.

    Example:
        >>> average_precision([True, False, True], num_positives=2)  # (1/1 + 2/3) / 2
        0.8333333333333333
        >>> average_precision([True, False, True], 2, "voc_all_point")
        0.8333333333333333
        >>> round(average_precision([False, True], 2, "11_point"), 4)
        0.2727
    """
    if method not in AP_METHODS:
        raise ValueError(f"ap must be one of {AP_METHODS}, got {method!r}")
    if num_positives <= 0:
        raise ValueError(f"num_positives must be > 0, got {num_positives}")
    tp = np.asarray(tp, dtype=bool)
    if tp.size == 0:
        return 0.0
    tp_cum = np.cumsum(tp)
    precision = tp_cum / np.arange(1, tp.size + 1)
    recall = tp_cum / num_positives
    if method == "non_interpolated":
        return float(precision[tp].sum() / num_positives)
    envelope = np.maximum.accumulate(np.concatenate([precision, [0.0]])[::-1])[::-1]
    if method == "voc_all_point":
        rec = np.concatenate([[0.0], recall])
        return float(np.sum((rec[1:] - rec[:-1]) * envelope[:-1]))
    points = np.linspace(0, 1, 11)
    at = np.searchsorted(recall, points, side="left")  # first rank reaching each recall
    return float(np.where(at < tp.size, envelope[np.minimum(at, tp.size - 1)], 0.0).mean())


# ----------------------------------------------------------------------------- clips


def _components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first, last) chunk of each run of True."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1


def clips_from_scores(scores, chunk_len: int = 6, m: int = 5, max_clips: int = 2500) -> dict[int, list]:
    """Ranked action clips of one video from its per-chunk class scores (thesis §5.4.2).

    Per class: lower a threshold over the chunk scores, group above-threshold
    chunks into connected components (clips), and collect them in stages of
    ``m``, ``2m``, ``4m``, ... clips: a stage stops lowering the threshold at
    the first value that gives at least its number of components, and keeps
    only the components that share no chunk with clips kept before. Stops at
    ``max_clips`` clips or when the threshold reaches the lowest score. A
    clip's score is the max of its chunks' scores.

    Choices where the thesis is silent: the threshold steps through the
    distinct score values (components change only there), starting from the
    highest; a chunk is above the threshold when its score is ``>=`` it;
    "intersect" means sharing a chunk; a stage that never reaches its number
    (components merge as the threshold falls) ends at the lowest score; when
    the last stage overshoots ``max_clips`` the highest-scoring clips are kept.

    Args:
        scores: ``[T, C]`` per-chunk scores (one row per chunk, background excluded).
        chunk_len: frames per chunk (6 in MSB-RNN); chunk ``i`` covers frames
            ``[i * chunk_len, (i + 1) * chunk_len)``.
        m: clips in the first stage (5 in the thesis).
        max_clips: clips per class at most (2,500 in the thesis).

    Returns:
        ``{class_id: [(start_frame, end_frame, score), ...]}``, by decreasing
        score; ``end_frame`` is exclusive.

    Example:
        >>> import numpy as np
        >>> s = np.array([[0.1], [0.9], [0.8], [0.1], [0.7], [0.2]])
        >>> # stage 1 (1 clip): >= 0.9 gives chunk 1; stage 2 (2 clips): >= 0.7 gives
        >>> # chunks 1-2 (overlaps, dropped) and 4; stage 3 never reaches 4 clips.
        >>> clips_from_scores(s, m=1)[0]
        [(6, 12, 0.9), (24, 30, 0.7)]
    """
    s = np.asarray(scores.detach().cpu() if hasattr(scores, "detach") else scores, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"scores must have shape [T, C], got {s.shape}")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite")
    if chunk_len <= 0 or m <= 0 or max_clips <= 0:
        raise ValueError("chunk_len, m and max_clips must be positive")
    t = s.shape[0]
    result: dict[int, list] = {}
    for c in range(s.shape[1]):
        col = s[:, c]
        if t == 0:
            result[c] = []
            continue
        # Components after adding chunks in decreasing score: a chunk adds one,
        # minus one for each neighbour already in (vectorised union-find).
        order = np.argsort(-col, kind="stable")
        rank = np.empty(t, np.int64)
        rank[order] = np.arange(t)
        left = np.r_[False, rank[:-1] < rank[1:]]
        right = np.r_[rank[1:] < rank[:-1], False]
        count_after = np.cumsum(1 - left[order].astype(np.int64) - right[order])
        values = col[order]
        last_of_value = np.r_[values[1:] != values[:-1], True]
        thresholds, counts = values[last_of_value], count_after[last_of_value]
        kept = np.zeros(t, dtype=bool)
        clips: list[tuple[int, int, float]] = []
        target, at = m, 0
        while at < thresholds.size and len(clips) < max_clips:
            reach = np.flatnonzero(counts[at:] >= target)
            at = at + (int(reach[0]) if reach.size else thresholds.size - 1 - at)
            first, last = _components(col >= thresholds[at])
            covered = np.concatenate([[0], np.cumsum(kept)])
            new = covered[last + 1] - covered[first] == 0
            for a, b in zip(first[new], last[new]):
                clips.append((int(a) * chunk_len, (int(b) + 1) * chunk_len, float(col[a : b + 1].max())))
                kept[a : b + 1] = True
            target, at = target * 2, at + 1
        order_out = sorted(range(len(clips)), key=lambda i: -clips[i][2])[:max_clips]
        result[c] = [clips[i] for i in sorted(order_out, key=lambda i: (-clips[i][2], i))]
    return result


def clips_to_detections(clips: Mapping[int, list]) -> dict[str, np.ndarray]:
    """One video's ``{class_id: [(start, end, score), ...]}`` as the detection format.

    Example:
        >>> d = clips_to_detections({3: [(0, 12, 0.9)], 5: [(6, 30, 0.4)]})
        >>> d["labels"].tolist(), d["segments"].tolist(), d["scores"].tolist()
        ([3, 5], [[0.0, 12.0], [6.0, 30.0]], [0.9, 0.4])
    """
    rows = [(c, a, b, sc) for c, items in clips.items() for a, b, sc in items]
    arr = np.asarray(rows, dtype=np.float64).reshape(-1, 4)
    return {"labels": arr[:, 0].astype(np.int64), "segments": arr[:, 1:3], "scores": arr[:, 3]}


# ----------------------------------------------------------------------------- evaluators


def _prepare(detections, ground_truth, classes):
    gt = read_side("ground_truth", ground_truth, with_scores=False)
    det = read_side("detections", detections, with_scores=True, videos=gt.videos)
    check_classes("ground_truth", gt, classes)
    check_classes("detections", det, classes)
    return det, gt


def _per_class(det: Segments, gt: Segments, ap: str, match_fn):
    """Run match_fn(class detections, class ground truth) per class with ground truth."""
    classes_gt = np.unique(gt.label)
    per_class, matches = {}, []
    for c in classes_gt.tolist():
        d_idx = np.flatnonzero(det.label == c)
        g_idx = np.flatnonzero(gt.label == c)
        order = d_idx[np.argsort(-det.score[d_idx], kind="stable")]  # decreasing score, ties by input order
        rank = np.empty(order.size, np.int64)
        rank[np.argsort(-det.score[d_idx], kind="stable")] = np.arange(order.size)
        per_class[c] = match_fn(d_idx, g_idx, rank, order, c, matches)
    ignored = sorted(set(np.unique(det.label).tolist()) - set(classes_gt.tolist()))
    return per_class, ignored, matches


def midpoint_map(detections: Mapping, ground_truth: Mapping, *, inclusive_end: bool = True,
                 ap: str = "non_interpolated", classes: Iterable[int] | None = None) -> dict:
    """Mean AP with the mid-point hit criterion (MSB-RNN's evaluation, thesis §5.4).

    A detection hits a ground-truth interval of its class and video when its
    mid-point ``(start + end) / 2`` lies inside it. Detections are taken in
    decreasing score (ties in input order); each claims a free interval its
    mid-point hits (if several, the one whose centre is nearest, then the
    lower index); a detection whose hit intervals are all claimed is a false
    positive, as is one that hits none.

    Args:
        detections: ``{video_id: {"labels", "segments", "scores"}}``.
        ground_truth: ``{video_id: {"labels", "segments"}}``; every video of
            ``detections`` must be here.
        inclusive_end: intervals contain their end (``start <= mid <= end``),
            as MPII Cooking 2 and MERL Shopping frame ranges; else ``start <= mid < end``.
        ap: ``"non_interpolated"``, ``"voc_all_point"`` or ``"11_point"``; see
            :func:`average_precision`.
        classes: all class ids, if known: a label outside raises.

    Returns:
        A dict with

        * ``"mAP"``: mean AP over the classes that have ground truth;
        * ``"per_class"``: ``{class_id: AP}``;
        * ``"matches"``: ``(video_id, class_id, detection index, ground-truth index)``
          of every hit, indices within the video's arrays;
        * ``"ignored_classes"``: classes with detections but no ground truth,
          left out of the mean. A class with ground truth but no detection has AP 0.

    Example:
        >>> gt = {"v": {"labels": [0, 0], "segments": [[0, 9], [20, 29]]}}
        >>> det = {"v": {"labels": [0, 0, 0], "segments": [[2, 6], [3, 7], [18, 30]], "scores": [0.9, 0.8, 0.5]}}
        >>> r = midpoint_map(det, gt)  # TP, FP (interval taken), TP: (1 + 2/3) / 2
        >>> round(r["mAP"], 4), r["matches"]
        (0.8333, [('v', 0, 0, 0), ('v', 0, 2, 1)])
    """
    det, gt = _prepare(detections, ground_truth, classes)
    mid = (det.start + det.end) / 2

    def match(d_idx, g_idx, rank, order, c, matches):
        pd, pg = cross_pairs(det.video[d_idx], gt.video[g_idx])
        m, lo, hi = mid[d_idx][pd], gt.start[g_idx][pg], gt.end[g_idx][pg]
        hit = (m >= lo) & ((m <= hi) if inclusive_end else (m < hi))
        cost = np.abs(m - (lo + hi) / 2)
        matched = greedy_match(rank, det.video[d_idx], pd[hit], pg[hit], cost[hit], g_idx.size)
        tp = matched[np.argsort(rank)] >= 0
        for j in np.flatnonzero(matched >= 0):
            matches.append((det.videos[det.video[d_idx[j]]], c, int(det.index[d_idx[j]]),
                            int(gt.index[g_idx[matched[j]]])))
        return average_precision(tp, g_idx.size, ap)

    per_class, ignored, matches = _per_class(det, gt, ap, match)
    matches.sort(key=lambda t: (str(t[0]), t[1], t[2]))
    mean = float(np.mean(list(per_class.values()))) if per_class else 0.0
    return {"mAP": mean, "per_class": per_class, "matches": matches, "ignored_classes": ignored}


def tiou_map(detections: Mapping, ground_truth: Mapping, *,
             thresholds=(0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95),
             ap: str = "voc_all_point", inclusive_end: bool = False,
             classes: Iterable[int] | None = None) -> dict:
    """Mean AP at temporal-IoU thresholds, as ActivityNet's detection evaluator.

    Per class and threshold, detections in decreasing score (ties in input
    order) each take the unmatched ground truth of their video with the
    highest tIoU, if that tIoU is ``>=`` the threshold (ties to the lower
    index); otherwise they are false positives. AP is VOC all-point, as
    ActivityNet's ``interpolated_prec_rec``.

    Args:
        detections, ground_truth, classes: as :func:`midpoint_map`.
        thresholds: tIoU thresholds (ActivityNet: 0.5:0.05:0.95).
        ap: AP method, see :func:`average_precision`.
        inclusive_end: frame ranges that contain their end frame (lengths are
            ``end - start + 1``); ActivityNet's seconds are not.

    Returns:
        A dict with

        * ``"mAP"``: mean over classes and thresholds;
        * ``"per_class"``: ``{class_id: AP per threshold}``;
        * ``"mAP_per_threshold"``: mean over classes, per threshold;
        * ``"thresholds"`` and ``"ignored_classes"`` (as :func:`midpoint_map`).

    Example:
        >>> gt = {"v": {"labels": [1], "segments": [[10.0, 20.0]]}}
        >>> det = {"v": {"labels": [1, 1], "segments": [[11.0, 20.0], [10.0, 19.0]], "scores": [0.6, 0.9]}}
        >>> r = tiou_map(det, gt, thresholds=(0.5, 0.95))
        >>> r["per_class"][1].tolist()  # tIoU 0.9 for both: a hit at 0.5, none at 0.95
        [1.0, 0.0]
    """
    thresholds = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if thresholds.size == 0 or not np.isfinite(thresholds).all():
        raise ValueError("thresholds must be a non-empty sequence of finite numbers")
    det, gt = _prepare(detections, ground_truth, classes)
    one = 1.0 if inclusive_end else 0.0

    def match(d_idx, g_idx, rank, order, c, matches):
        pd, pg = cross_pairs(det.video[d_idx], gt.video[g_idx])
        ds, de = det.start[d_idx][pd], det.end[d_idx][pd]
        gs, ge = gt.start[g_idx][pg], gt.end[g_idx][pg]
        inter = np.clip(np.minimum(de, ge) - np.maximum(ds, gs) + one, 0, None)
        union = (de - ds + one) + (ge - gs + one) - inter
        tiou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        aps = []
        for thr in thresholds:
            ok = tiou >= thr
            matched = greedy_match(rank, det.video[d_idx], pd[ok], pg[ok], -tiou[ok], g_idx.size)
            aps.append(average_precision(matched[np.argsort(rank)] >= 0, g_idx.size, ap))
        return np.asarray(aps)

    per_class, ignored, _ = _per_class(det, gt, ap, match)
    table = np.stack(list(per_class.values())) if per_class else np.zeros((0, thresholds.size))
    per_thr = table.mean(0) if per_class else np.zeros(thresholds.size)
    return {"mAP": float(per_thr.mean()), "per_class": per_class, "mAP_per_threshold": per_thr,
            "thresholds": thresholds.tolist(), "ignored_classes": ignored}
