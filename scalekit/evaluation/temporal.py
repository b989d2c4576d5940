"""Temporal action detection: clips as detections, mid-point-hit mAP
and temporal-IoU mAP (MSB-RNN, thesis §5.4: MPII Cooking 2 and MERL Shopping).

Detections and ground truth are per-video dicts::

    {video_id: {"labels": int[N], "segments": float[N, 2], "scores": float[N]}}

(ground truth without ``"scores"``), with numpy arrays, torch tensors or lists.
Segments are ``(start, end)`` in frames (or seconds: any unit, the same on
both sides).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np

from scalekit.progress import progress as progress_bar
from scalekit.evaluation._match import GroupIndex, greedy_match, pieces
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
    if isinstance(num_positives, bool) or not isinstance(num_positives, (int, np.integer)):
        raise TypeError(f"num_positives must be an int, got {type(num_positives).__name__} {num_positives!r}")
    if num_positives <= 0:
        raise ValueError(f"num_positives must be > 0, got {num_positives}")
    tp = np.asarray(tp)
    if tp.size and tp.dtype != bool:
        raise TypeError(f"tp must be bools (whether each detection is a true positive), got {tp.dtype}")
    tp = tp.astype(bool).reshape(tp.shape)
    if tp.ndim != 1:
        raise ValueError(f"tp must be 1-D (one bool per detection, in decreasing score), got shape {tp.shape}")
    if tp.sum() > num_positives:
        raise ValueError(f"tp has {int(tp.sum())} true positives, more than num_positives={num_positives}")
    return float(_ap_rows(tp[None], num_positives, method)[0])


def _ap_rows(tp: np.ndarray, num_positives: int, method: str) -> np.ndarray:
    """[R] AP of each row of ``tp`` ([R, N] bool), as :func:`average_precision` (checked arguments)."""
    r, n = tp.shape
    if n == 0:
        return np.zeros(r)
    if r > 1 and r * n > 1 << 20:  # a row at a time: a few float arrays of one row, not of all
        return np.concatenate([_ap_rows(tp[i:i + 1], num_positives, method) for i in range(r)])
    tp_cum = np.cumsum(tp, axis=1)
    precision = tp_cum / np.arange(1, n + 1)
    recall = tp_cum / num_positives
    if method == "non_interpolated":
        return np.where(tp, precision, 0.0).sum(1) / num_positives
    envelope = np.maximum.accumulate(np.concatenate([precision, np.zeros((r, 1))], 1)[:, ::-1], axis=1)[:, ::-1]
    if method == "voc_all_point":
        rec = np.concatenate([np.zeros((r, 1)), recall], 1)
        return np.sum((rec[:, 1:] - rec[:, :-1]) * envelope[:, :-1], axis=1)
    points = np.linspace(0, 1, 11)
    out = np.empty(r)
    for i in range(r):
        at = np.searchsorted(recall[i], points, side="left")  # first rank reaching each recall
        out[i] = np.where(at < n, envelope[i, np.minimum(at, n - 1)], 0.0).mean()
    return out


# ----------------------------------------------------------------------------- clips
# clips_from_scores (per-chunk scores to clips) lives in scalekit.sequence.


def clips_to_detections(clips: Mapping[int, list]) -> dict[str, np.ndarray]:
    """One video's ``{class_id: [(start, end, score), ...]}`` as the detection format.

    Example:
        >>> d = clips_to_detections({3: [(0, 12, 0.9)], 5: [(6, 30, 0.4)]})
        >>> d["labels"].tolist(), d["segments"].tolist(), d["scores"].tolist()
        ([3, 5], [[0.0, 12.0], [6.0, 30.0]], [0.9, 0.4])
    """
    if not isinstance(clips, Mapping):
        raise TypeError(f"clips must be a dict {{class_id: [(start, end, score), ...]}}, got {type(clips).__name__}")
    rows = []
    for c, items in clips.items():
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)):
            raise TypeError(f"clips: class ids must be ints, got {c!r}")
        for i, item in enumerate(items):
            if (not isinstance(item, (tuple, list)) or len(item) != 3
                    or any(isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) for v in item)):
                raise ValueError(f"clips[{c}][{i}] must be (start, end, score), 3 numbers, got {item!r}")
            rows.append((c, *item))
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


def _score_order(det: Segments) -> np.ndarray:
    """[D] the detections by class, then decreasing score, ties in input order (one sort for all classes)."""
    by_score = np.argsort(-det.score)  # numpy's fastest sort; stable only where no two scores are equal
    ranked = det.score[by_score]
    if (ranked[1:] == ranked[:-1]).any():  # ties: input order among them, by a stable sort
        by_score = np.argsort(-det.score, kind="stable")
    labels = det.label[by_score]
    if labels.size and labels.max() < 2**15:  # numpy's stable sort of 16-bit integers is a radix sort
        labels = labels.astype(np.int16)
    return by_score[np.argsort(labels, kind="stable")]


def _per_class(det: Segments, gt: Segments, match_fn, progress=False, desc: str = ""):
    """Run match_fn(class detections, class ground truth) per class with ground truth."""
    d_order = _score_order(det)
    d_label = det.label[d_order]
    g_order = np.argsort(gt.label, kind="stable")
    g_label = gt.label[g_order]
    classes_gt = np.unique(g_label)
    per_class, matches = {}, []
    for c in progress_bar(classes_gt.tolist(), bool(progress), desc=desc):
        d_idx = d_order[np.searchsorted(d_label, c, "left"):np.searchsorted(d_label, c, "right")]
        g_idx = g_order[np.searchsorted(g_label, c, "left"):np.searchsorted(g_label, c, "right")]
        rank = np.arange(d_idx.size)  # d_idx is in decreasing score, ties by input order
        per_class[c] = match_fn(d_idx, g_idx, rank, c, matches)
    ignored = sorted(set(np.unique(d_label).tolist()) - set(classes_gt.tolist()))
    return per_class, ignored, matches


def _by_score(d_idx, g_idx, rank, det: Segments, gt: Segments, copies: int = 1):
    """Pieces of one class's detections in decreasing score, with their candidate pairs.

    Yields ``(part, pd, pg)``: ``part`` positions in ``d_idx`` (consecutive
    ranks), and the pairs of the piece (``pd`` positions in ``part``, ``pg``
    positions in ``g_idx``) of detection and ground truth in one video.
    Memory: O(detections + ground truth + the pair budget), see :mod:`._match`;
    ``copies``: the caller matches each pair this many times at once (one per
    threshold), so that a piece holds the budget divided by it.
    """
    by_rank = np.argsort(rank)
    index = GroupIndex(gt.video[g_idx])
    dv = det.video[d_idx]
    for piece in pieces(index.counts(dv[by_rank]) * copies):
        part = by_rank[piece]
        pd, pg = index.pairs(dv[part])
        yield part, pd, pg


def _mean_over_classes(name: str, per_class: dict, size: int | None = None):
    """Mean of the per-class APs (axis 0), NaN with a warning when no class has ground truth."""
    if per_class:
        return np.stack(list(per_class.values())).mean(0) if size is not None else float(np.mean(list(per_class.values())))
    warnings.warn(f"{name}: the ground truth has no segment of any class (an empty subset, or the wrong file?): "
                  f"the mAP is NaN, as ActivityNet's tool gives", RuntimeWarning, stacklevel=3)
    return np.full(size, np.nan) if size is not None else float("nan")


def _named(result: dict, classes) -> dict:
    """Key per_class and ignored_classes by class name when ``classes`` maps names to ids."""
    names = class_names(classes)
    if names is not None:
        result["per_class"] = {names[c]: v for c, v in result["per_class"].items()}
        result["ignored_classes"] = [names[c] for c in result["ignored_classes"]]
    return result


def midpoint_map(detections: Mapping, ground_truth: Mapping, *, inclusive_end: bool = True,
                 ap: str = "non_interpolated", classes=None, negative_starts: str = "raise",
                 progress: bool = False) -> dict:
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
        progress: show a progress bar over the classes on stderr
            (:func:`scalekit.progress.progress`).

    Returns:
        A dict with

        * ``"mAP"``: mean AP over the classes that have ground truth;
        * ``"per_class"``: ``{class_id (or name): AP}``;
        * ``"matches"``: ``(video_id, class_id, detection index, ground-truth index)``
          of every hit, indices within the video's arrays;
        * ``"ignored_classes"``: classes with detections but no ground truth,
          left out of the mean. A class with ground truth but no detection has AP 0.
          Without any ground-truth segment the mAP is NaN, with a warning
          (as ActivityNet's tool, whose mean over no class is NaN).

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
        matched = np.full(d_idx.size, -1, dtype=np.int64)
        free = np.ones(g_idx.size, dtype=bool)
        for part, pd, pg in _by_score(d_idx, g_idx, rank, det, gt):
            m, lo, hi = mid[d_idx[part[pd]]], gt.start[g_idx[pg]], gt.end[g_idx[pg]]
            hit = (m >= lo) & ((m <= hi) if inclusive_end else (m < hi))
            cost = np.abs(m - (lo + hi) / 2)
            matched[part] = greedy_match(rank[part], det.video[d_idx[part]], pd[hit], pg[hit], cost[hit], free)
        tp = matched[np.argsort(rank)] >= 0
        for j in np.flatnonzero(matched >= 0):
            matches.append((det.videos[det.video[d_idx[j]]], c, int(det.index[d_idx[j]]),
                            int(gt.index[g_idx[matched[j]]])))
        return average_precision(tp, g_idx.size, ap)

    per_class, ignored, matches = _per_class(det, gt, match, progress, "midpoint_map")
    matches.sort(key=lambda t: (str(t[0]), t[1], t[2]))
    mean = _mean_over_classes("midpoint_map", per_class)
    return _named({"mAP": mean, "per_class": per_class, "matches": matches, "ignored_classes": ignored}, classes)


def _check_zero_union(union, d, g, det, gt, c=None):
    """d, g: [P] detection and ground-truth indices of the pairs; c: their class (default: the detection's)."""
    for k in np.flatnonzero(union <= 0)[:1]:
        d, g = d[k], g[k]
        c = int(det.label[d]) if c is None else c
        raise ValueError(
            f"tiou_map: detections[{det.videos[det.video[d]]!r}] segment {det.index[d]} and "
            f"ground_truth[{gt.videos[gt.video[g]]!r}] segment {gt.index[g]} of class {c} both have zero length ({[float(det.start[d]), float(det.end[d])]} and "
            f"{[float(gt.start[g]), float(gt.end[g])]}): their tIoU is 0/0 (ActivityNet's tool counts that NaN as a match, "
            f"wherever the two are); give segments at least one frame of length, or drop them")


def _ambiguous_overlap(ambiguous, det: Segments, negative_starts: str) -> np.ndarray:
    """[D] bool: the detection overlaps (positive intersection) an Ambiguous segment of its video."""
    out = np.zeros(det.label.size, dtype=bool)
    if ambiguous is None:
        return out
    if not isinstance(ambiguous, Mapping):
        raise TypeError(f"ambiguous must be a dict {{video_id: float[N, 2] segments}}, got {type(ambiguous).__name__}")
    wrapped = {}
    for v, s in ambiguous.items():
        s = np.asarray(s.detach().cpu() if hasattr(s, "detach") else s, dtype=np.float64)
        if s.size == 0:
            s = s.reshape(0, 2)
        if s.ndim != 2 or s.shape[1] != 2:
            raise ValueError(f"ambiguous[{v!r}] must have shape [N, 2], got {s.shape}")
        wrapped[v] = {"labels": np.zeros(len(s), np.int64), "segments": s}
    amb = read_side("ambiguous", wrapped, with_scores=False, negative_starts=negative_starts)
    index_of = {v: i for i, v in enumerate(det.videos)}
    amb_video = np.asarray([index_of.get(amb.videos[i], -1) for i in amb.video], dtype=np.int64)
    index = GroupIndex(amb_video)
    for piece in pieces(index.counts(det.video)):
        part = np.arange(piece.start, piece.stop)
        pd, pa = index.pairs(det.video[part])
        d = part[pd]
        inter = np.minimum(det.end[d], amb.end[pa]) - np.maximum(det.start[d], amb.start[pa])
        out[d[inter > 0]] = True
    return out


def _gt_side_match(rank, pair_det, pair_gt, pair_ov, round_of_gt, free, matched) -> None:
    """THUMOS14's matching: in each group, ground truths in input order each take
    the free detection of highest overlap (ties: higher score, then input order).

    ``round_of_gt``: [G] position of each ground truth in its group (its round);
    the pairs are those of whole rounds, after all earlier rounds were played.
    ``free`` ([D] bool) and ``matched`` ([D] ground truth or -1) are updated in place.
    """
    if pair_det.size == 0:
        return
    order = np.lexsort((rank[pair_det], -pair_ov, pair_gt, round_of_gt[pair_gt]))
    pd, pg = pair_det[order], pair_gt[order]
    rounds = round_of_gt[pg]
    bounds = np.r_[0, np.flatnonzero(rounds[1:] != rounds[:-1]) + 1, rounds.size]
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        d, g = pd[lo:hi], pg[lo:hi]
        idx = np.flatnonzero(free[d])
        if idx.size == 0:
            continue
        first = idx[np.r_[True, g[idx][1:] != g[idx][:-1]]]  # best free detection per ground truth
        matched[d[first]] = g[first]
        free[d[first]] = False


def tiou_map(detections: Mapping, ground_truth: Mapping, *, protocol: str = "activitynet",
             thresholds=None, ap: str | None = None, inclusive_end: bool = False, classes=None,
             ambiguous: Mapping | None = None, negative_starts: str = "raise", progress: bool = False) -> dict:
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
        progress: as :func:`midpoint_map` (over the classes).

    Returns:
        A dict with

        * ``"mAP"``: mean over classes and thresholds (NaN, with a warning,
          when the ground truth has no segment: as the official tool);
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
    if thresholds.size == 0 or not ((thresholds >= 0) & (thresholds <= 1)).all():
        raise ValueError(f"thresholds must be a non-empty sequence of tIoUs in [0, 1], got {thresholds.tolist()}")
    if thumos and inclusive_end:
        raise ValueError("inclusive_end=True is for frame ranges; protocol='thumos14' measures seconds")
    if ambiguous is not None and not thumos:
        raise ValueError("ambiguous segments are part of protocol='thumos14' only")
    det, gt = _prepare(detections, ground_truth, classes, unknown_videos="keep", negative_starts=negative_starts)
    known = len(gt.videos)
    unknown = det.videos[known:]
    in_amb = _ambiguous_overlap(ambiguous, det, negative_starts) if thumos else None
    one = 1.0 if inclusive_end else 0.0

    def tiou_of(d, g):
        """tIoU of the pairs of detection and ground-truth indices d, g."""
        ds, de, gs, ge = det.start[d], det.end[d], gt.start[g], gt.end[g]
        inter = np.minimum(de, ge) - np.maximum(ds, gs) + one
        if thumos:  # the kit divides by the hull, which is the union wherever they overlap
            return np.where(inter > 0, inter / np.where(inter > 0, np.maximum(de, ge) - np.minimum(ds, gs), 1), 0.0)
        inter = np.clip(inter, 0, None)
        union = (de - ds + one) + (ge - gs + one) - inter
        _check_zero_union(union, d, g, det, gt)
        return inter / union

    def match_activitynet():
        # all classes and thresholds at once: a (class, video, threshold) is a group of
        # greedy_match; detection d at threshold t is d * T + t, ground truth g is g * T + t
        n_t = thresholds.size
        d_all = _score_order(det)
        classes_gt, n_gt = np.unique(gt.label, return_counts=True)
        d_all = d_all[np.isin(det.label[d_all], classes_gt)]  # by class, then decreasing score
        n_v = len(det.videos)  # the ground truth's videos first, then those only detections name
        d_group = det.label[d_all] * n_v + det.video[d_all]
        index = GroupIndex(gt.label * n_v + gt.video)
        hit = np.zeros((d_all.size, n_t), dtype=bool)
        free = np.ones(gt.label.size * n_t, dtype=bool)
        for piece in pieces(index.counts(d_group) * n_t):
            part = np.arange(piece.start, piece.stop)  # ranks: detections' positions in d_all
            pd, pg = index.pairs(d_group[part])
            tiou = tiou_of(d_all[part[pd]], pg)
            p, t = np.nonzero(tiou[:, None] >= thresholds[None, :])
            matched = greedy_match(np.repeat(part, n_t), (d_group[part][:, None] * n_t + np.arange(n_t)).reshape(-1),
                                   pd[p] * n_t + t, pg[p] * n_t + t, -tiou[p], free)
            hit[part] = (matched >= 0).reshape(-1, n_t)
        bounds = np.searchsorted(det.label[d_all], np.r_[classes_gt, classes_gt[-1] + 1] if classes_gt.size else [])
        per_class = {}
        for k, c in enumerate(progress_bar(classes_gt.tolist(), bool(progress), desc="tiou_map")):
            per_class[c] = _ap_rows(np.ascontiguousarray(hit[bounds[k]:bounds[k + 1]]).T, int(n_gt[k]), ap)
        ignored = sorted(set(np.unique(det.label).tolist()) - set(classes_gt.tolist()))
        return per_class, ignored

    def match_thumos(d_idx, g_idx, rank):
        # ground truths play in rounds: the r-th of every video in round r (input order)
        gv = gt.video[g_idx]
        g_sorted = np.lexsort((np.arange(g_idx.size), gv))
        starts = np.r_[0, np.flatnonzero(np.diff(gv[g_sorted])) + 1]
        round_of = np.empty(g_idx.size, np.int64)
        round_of[g_sorted] = np.arange(g_idx.size) - np.repeat(starts, np.diff(np.r_[starts, g_idx.size]))
        by_round = np.lexsort((np.arange(g_idx.size), round_of))
        matched = np.full((thresholds.size, d_idx.size), -1, dtype=np.int64)
        free = np.ones((thresholds.size, d_idx.size), dtype=bool)
        index = GroupIndex(det.video[d_idx])
        for piece in pieces(index.counts(gv[by_round])):
            part = by_round[piece]
            pgl, pd = index.pairs(gv[part])
            pg = part[pgl]
            tiou = tiou_of(d_idx[pd], g_idx[pg])
            for t, thr in enumerate(thresholds):
                ok = tiou > thr
                _gt_side_match(rank, pd[ok], pg[ok], tiou[ok], round_of, free[t], matched[t])
        by_rank = np.argsort(rank)
        aps = []
        for t in range(thresholds.size):
            hit = matched[t, by_rank] >= 0
            kept = hit | ~in_amb[d_idx][by_rank]
            aps.append(_ap_rows(hit[kept][None], g_idx.size, ap)[0])
        return np.asarray(aps)

    if thumos:
        per_class, ignored, _ = _per_class(det, gt, lambda d_idx, g_idx, rank, c, matches: match_thumos(
            d_idx, g_idx, rank), progress, "tiou_map")
    else:
        per_class, ignored = match_activitynet()
    per_thr = _mean_over_classes("tiou_map", per_class, thresholds.size)
    return _named({"mAP": float(per_thr.mean()), "per_class": per_class, "mAP_per_threshold": per_thr,
                   "thresholds": thresholds.tolist(), "ignored_classes": ignored,
                   "unknown_videos": list(unknown)}, classes)
