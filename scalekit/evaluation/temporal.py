"""Temporal action detection: clips as detections, mid-point-hit mAP
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
from scalekit.evaluation._segments import Segments, check_classes, class_names, read_side

__all__ = [
    "ACTIVITYNET_THRESHOLDS",
    "THUMOS14_THRESHOLDS",
    "average_precision",
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
            envelope at recall 0, 0.1, ..., 1: THUMOS14's 2014 kit, VOC 2007).

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
# clips_from_scores (per-chunk scores to clips) lives in scalekit.sequence.


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


ACTIVITYNET_THRESHOLDS = tuple(np.linspace(0.5, 0.95, 10).tolist())
"""ActivityNet's tIoU grid, ``np.linspace(0.5, 0.95, 10)`` as its evaluator builds it (0.9 is 0.8999999999999999)."""
THUMOS14_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5)
"""THUMOS14's 2014 kit evaluates at ``.1:.1:.5`` (papers often report 0.3:0.1:0.7)."""
PROTOCOLS = ("activitynet", "thumos14")


def _prepare(detections, ground_truth, classes, *, unknown_videos="raise", negative_starts="raise"):
    gt = read_side("ground_truth", ground_truth, with_scores=False, negative_starts=negative_starts)
    det = read_side("detections", detections, with_scores=True, videos=gt.videos,
                    unknown_videos=unknown_videos, negative_starts=negative_starts)
    check_classes("ground_truth", gt, classes)
    check_classes("detections", det, classes)
    return det, gt


def _per_class(det: Segments, gt: Segments, match_fn):
    """Run match_fn(class detections, class ground truth) per class with ground truth."""
    classes_gt = np.unique(gt.label)
    per_class, matches = {}, []
    for c in classes_gt.tolist():
        d_idx = np.flatnonzero(det.label == c)
        g_idx = np.flatnonzero(gt.label == c)
        rank = np.empty(d_idx.size, np.int64)  # decreasing score, ties by input order
        rank[np.argsort(-det.score[d_idx], kind="stable")] = np.arange(d_idx.size)
        per_class[c] = match_fn(d_idx, g_idx, rank, c, matches)
    ignored = sorted(set(np.unique(det.label).tolist()) - set(classes_gt.tolist()))
    return per_class, ignored, matches


def _named(result: dict, classes) -> dict:
    """Key per_class and ignored_classes by class name when ``classes`` maps names to ids."""
    names = class_names(classes)
    if names is not None:
        result["per_class"] = {names[c]: v for c, v in result["per_class"].items()}
        result["ignored_classes"] = [names[c] for c in result["ignored_classes"]]
    return result


def midpoint_map(detections: Mapping, ground_truth: Mapping, *, inclusive_end: bool = True,
                 ap: str = "non_interpolated", classes=None, negative_starts: str = "raise") -> dict:
    """Mean AP with the mid-point hit criterion (MSB-RNN's evaluation, thesis §5.4).

    A detection hits a ground-truth interval of its class and video when its
    mid-point ``(start + end) / 2`` lies inside it. Detections are taken in
    decreasing score (ties in input order); each claims a free interval its
    mid-point hits (if several, the one whose centre is nearest, then the
    lower index); a detection whose hit intervals are all claimed is a false
    positive, as is one that hits none. This is the protocol for MPII Cooking 2
    and MERL Shopping; for ActivityNet and THUMOS14 numbers use :func:`tiou_map`.

    Args:
        detections: ``{video_id: {"labels", "segments", "scores"}}``.
        ground_truth: ``{video_id: {"labels", "segments"}}``; every video of
            ``detections`` must be here.
        inclusive_end: intervals contain their end (``start <= mid <= end``),
            as MPII Cooking 2 and MERL Shopping frame ranges; else ``start <= mid < end``.
        ap: ``"non_interpolated"``, ``"voc_all_point"`` or ``"11_point"``; see
            :func:`average_precision`.
        classes: all class ids, if known (a label outside raises), or a
            ``{name: id}`` mapping (as the readers return): then results are
            keyed by name.
        negative_starts: ``"raise"``, ``"clip"`` (clip segments at 0) or ``"keep"``.

    Returns:
        A dict with

        * ``"mAP"``: mean AP over the classes that have ground truth;
        * ``"per_class"``: ``{class_id (or name): AP}``;
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
        >>> midpoint_map(det, gt, classes={"cut": 0})["per_class"]
        {'cut': 0.8333333333333333}
    """
    det, gt = _prepare(detections, ground_truth, classes, negative_starts=negative_starts)
    mid = (det.start + det.end) / 2

    def match(d_idx, g_idx, rank, c, matches):
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

    per_class, ignored, matches = _per_class(det, gt, match)
    matches.sort(key=lambda t: (str(t[0]), t[1], t[2]))
    mean = float(np.mean(list(per_class.values()))) if per_class else 0.0
    return _named({"mAP": mean, "per_class": per_class, "matches": matches, "ignored_classes": ignored}, classes)


def _check_zero_union(union, pd, pg, d_idx, g_idx, det, gt, c):
    for k in np.flatnonzero(union <= 0)[:1]:
        d, g = d_idx[pd[k]], g_idx[pg[k]]
        raise ValueError(
            f"tiou_map: detection {det.index[d]} and ground truth {gt.index[g]} of class {c} in video "
            f"{det.videos[det.video[d]]!r} both have zero length ({[float(det.start[d]), float(det.end[d])]} and "
            f"{[float(gt.start[g]), float(gt.end[g])]}): their tIoU is 0/0 (ActivityNet's tool counts that NaN as a match, "
            f"wherever the two are); give segments at least one frame of length, or drop them")


def _ambiguous_overlap(ambiguous, det: Segments, negative_starts: str) -> np.ndarray:
    """[D] bool: the detection overlaps (positive intersection) an Ambiguous segment of its video."""
    out = np.zeros(det.label.size, dtype=bool)
    if ambiguous is None:
        return out
    if not isinstance(ambiguous, Mapping):
        raise TypeError(f"ambiguous must be a dict {{video_id: float[N, 2] segments}}, got {type(ambiguous).__name__}")
    wrapped = {v: {"labels": np.zeros(len(np.asarray(s).reshape(-1, 2)), np.int64), "segments": s}
               for v, s in ambiguous.items()}
    amb = read_side("ambiguous", wrapped, with_scores=False, negative_starts=negative_starts)
    index_of = {v: i for i, v in enumerate(det.videos)}
    amb_video = np.asarray([index_of.get(amb.videos[i], -1) for i in amb.video], dtype=np.int64)
    pd, pa = cross_pairs(det.video, amb_video)
    inter = np.minimum(det.end[pd], amb.end[pa]) - np.maximum(det.start[pd], amb.start[pa])
    out[pd[inter > 0]] = True
    return out


def _gt_side_match(rank, det_group, gt_group, pair_det, pair_gt, pair_ov, n_gt, n_det):
    """THUMOS14's matching: in each group, ground truths in input order each take
    the free detection of highest overlap (ties: higher score, then input order)."""
    matched = np.full(n_det, -1, dtype=np.int64)
    if pair_det.size == 0:
        return matched
    order = np.lexsort((rank[pair_det], -pair_ov, pair_gt))
    pd, pg = pair_det[order], pair_gt[order]
    # position of each ground truth within its group (input order), the round it plays in
    g_order = np.lexsort((np.arange(n_gt), gt_group))
    pos = np.empty(n_gt, np.int64)
    starts = np.r_[0, np.flatnonzero(np.diff(gt_group[g_order])) + 1]
    counts = np.diff(np.r_[starts, n_gt])
    pos[g_order] = np.arange(n_gt) - np.repeat(starts, counts)
    free = np.ones(n_det, dtype=bool)
    round_of = pos[pg]
    for r in range(int(round_of.max()) + 1):
        idx = np.flatnonzero((round_of == r) & free[pd])
        if idx.size == 0:
            continue
        first = idx[np.r_[True, pg[idx][1:] != pg[idx][:-1]]]  # best free detection per ground truth
        matched[pd[first]] = pg[first]
        free[pd[first]] = False
    return matched


def tiou_map(detections: Mapping, ground_truth: Mapping, *, protocol: str = "activitynet",
             thresholds=None, ap: str | None = None, inclusive_end: bool = False, classes=None,
             ambiguous: Mapping | None = None, negative_starts: str = "raise") -> dict:
    """Mean AP at temporal-IoU thresholds, as ActivityNet's or THUMOS14's official tool.

    ``protocol="activitynet"`` (``Evaluation/eval_detection.py``): per class and
    threshold, detections in decreasing score each take the unmatched ground
    truth of their video with the highest tIoU, if that tIoU is ``>=`` the
    threshold; AP is VOC all-point; thresholds ``np.linspace(0.5, 0.95, 10)``.

    ``protocol="thumos14"`` (``TH14evalDet_Updated.m``; the 2014 kit with
    ``ap="11_point"``): per class, video and threshold, ground truths in input
    order each take the still-free detection of highest tIoU, if that tIoU is
    strictly ``>`` the threshold; unmatched detections that overlap an
    ``ambiguous`` segment of their video are left out (neither true nor false
    positives); AP is non-interpolated; thresholds 0.1:0.1:0.5.

    In both, detections on videos the ground truth lacks are false positives
    (listed in ``"unknown_videos"``), and the mean runs over the classes with
    ground truth. Where the tools are undefined scalekit differs, on purpose:
    equal scores are ranked in input order (the tools: numpy's unstable
    argsort, or the kit's per-video concatenation); a pair of zero-length
    segments (tIoU 0/0, a match for ActivityNet's tool) raises; reversed
    segments raise.

    Args:
        detections, ground_truth: as :func:`midpoint_map`; ``detections`` may
            name videos that ``ground_truth`` lacks.
        protocol: ``"activitynet"`` or ``"thumos14"``.
        thresholds: tIoU thresholds; default the protocol's (see above).
        ap: AP method (:func:`average_precision`); default the protocol's.
        inclusive_end: frame ranges that contain their end frame (lengths are
            ``end - start + 1``; ``"activitynet"`` only).
        classes: as :func:`midpoint_map` (a ``{name: id}`` mapping keys the
            results by name).
        ambiguous: ``"thumos14"`` only: ``{video_id: float[N, 2]}`` Ambiguous
            segments, as :func:`~scalekit.evaluation.read_thumos14` returns them.
        negative_starts: ``"raise"``, ``"clip"`` (at 0) or ``"keep"`` (the
            official tools keep them).

    Returns:
        A dict with

        * ``"mAP"``: mean over classes and thresholds;
        * ``"per_class"``: ``{class_id (or name): float64[T] AP per threshold}``;
        * ``"mAP_per_threshold"``: mean over classes, per threshold;
        * ``"thresholds"``, ``"ignored_classes"`` (as :func:`midpoint_map`) and
          ``"unknown_videos"`` (detection videos not in the ground truth).

    Example:
        >>> gt = {"v": {"labels": [1], "segments": [[10.0, 20.0]]}}
        >>> det = {"v": {"labels": [1, 1], "segments": [[11.0, 20.0], [10.0, 19.0]], "scores": [0.6, 0.9]}}
        >>> r = tiou_map(det, gt, thresholds=(0.5, 0.95))
        >>> r["per_class"][1].tolist()  # tIoU 0.9 for both: a hit at 0.5, none at 0.95
        [1.0, 0.0]
        >>> det["elsewhere"] = {"labels": [1], "segments": [[0.0, 5.0]], "scores": [0.95]}
        >>> r = tiou_map(det, gt, thresholds=(0.5,))  # a false positive ranked first
        >>> r["mAP"], r["unknown_videos"]
        (0.5, ['elsewhere'])
        >>> gt = {"v": {"labels": [1], "segments": [[0.0, 10.0]]}}
        >>> det = {"v": {"labels": [1, 1], "segments": [[0.0, 6.0], [0.0, 9.0]], "scores": [0.9, 0.5]}}
        >>> tiou_map(det, gt, protocol="thumos14", thresholds=(0.5,))["mAP"]  # the ground truth takes [0, 9]
        0.5
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    thumos = protocol == "thumos14"
    if thresholds is None:
        thresholds = THUMOS14_THRESHOLDS if thumos else ACTIVITYNET_THRESHOLDS
    if ap is None:
        ap = "non_interpolated" if thumos else "voc_all_point"
    thresholds = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if thresholds.size == 0 or not np.isfinite(thresholds).all():
        raise ValueError("thresholds must be a non-empty sequence of finite numbers")
    if thumos and inclusive_end:
        raise ValueError("inclusive_end=True is for frame ranges; protocol='thumos14' measures seconds")
    if ambiguous is not None and not thumos:
        raise ValueError("ambiguous segments are part of protocol='thumos14' only")
    det, gt = _prepare(detections, ground_truth, classes, unknown_videos="keep", negative_starts=negative_starts)
    known = len(gt.videos)
    unknown = det.videos[known:]
    in_amb = _ambiguous_overlap(ambiguous, det, negative_starts) if thumos else None
    one = 1.0 if inclusive_end else 0.0

    def match(d_idx, g_idx, rank, c, matches):
        pd, pg = cross_pairs(det.video[d_idx], gt.video[g_idx])
        ds, de = det.start[d_idx][pd], det.end[d_idx][pd]
        gs, ge = gt.start[g_idx][pg], gt.end[g_idx][pg]
        inter = np.minimum(de, ge) - np.maximum(ds, gs) + one
        if thumos:  # the kit divides by the hull, which is the union wherever they overlap
            tiou = np.where(inter > 0, inter / np.where(inter > 0, np.maximum(de, ge) - np.minimum(ds, gs), 1), 0.0)
        else:
            inter = np.clip(inter, 0, None)
            union = (de - ds + one) + (ge - gs + one) - inter
            _check_zero_union(union, pd, pg, d_idx, g_idx, det, gt, c)
            tiou = inter / union
        by_rank = np.argsort(rank)
        aps = []
        for thr in thresholds:
            if thumos:
                ok = tiou > thr
                matched = _gt_side_match(rank, det.video[d_idx], gt.video[g_idx], pd[ok], pg[ok], tiou[ok],
                                         g_idx.size, d_idx.size)
                hit = matched[by_rank] >= 0
                kept = hit | ~in_amb[d_idx][by_rank]
                aps.append(average_precision(hit[kept], g_idx.size, ap))
            else:
                ok = tiou >= thr
                matched = greedy_match(rank, det.video[d_idx], pd[ok], pg[ok], -tiou[ok], g_idx.size)
                aps.append(average_precision(matched[by_rank] >= 0, g_idx.size, ap))
        return np.asarray(aps)

    per_class, ignored, _ = _per_class(det, gt, match)
    table = np.stack(list(per_class.values())) if per_class else np.zeros((0, thresholds.size))
    per_thr = table.mean(0) if per_class else np.zeros(thresholds.size)
    return _named({"mAP": float(per_thr.mean()), "per_class": per_class, "mAP_per_threshold": per_thr,
                   "thresholds": thresholds.tolist(), "ignored_classes": ignored,
                   "unknown_videos": list(unknown)}, classes)
