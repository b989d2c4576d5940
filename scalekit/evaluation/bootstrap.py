"""COCO AP under a bootstrap over test images: confidence intervals for AP and for paired differences.

:func:`coco_image_matches` runs pycocotools' matching once (``COCOeval.evaluate``,
area "all", ``max_dets`` per image); :func:`bootstrap_coco_ap` then recomputes
COCO's AP (101-point interpolated precision, mean over IoU thresholds and over
the categories that have objects) for many resamples of the images, drawn with
replacement. An image drawn ``m`` times counts ``m`` times: its detections and
objects are weighted by ``m``, which is COCO's accumulation over the images
listed with repeats (up to the order of detections with exactly equal scores).
Passing the matches of several detectors evaluated on the same images uses the
same resamples for all, so that differences between them are *paired*.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

import numpy as np

from scalekit.evaluation.coco import _check_results, _load_gt

__all__ = ["coco_image_matches", "bootstrap_coco_ap", "paired_difference", "paired_bootstrap"]

RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)  # COCO's recThrs
MAX_RESAMPLES = 10**6  # a bound, so that a typo is an error, not hours of work and memory per image
AREA_RANGES = {"all": (0, 1e10), "small": (0, 32**2), "medium": (32**2, 96**2), "large": (96**2, 1e10)}  # COCO's


def coco_image_matches(results: Sequence, coco_gt, *, iou_type: str = "bbox", max_dets: int = 100,
                       area="all") -> dict:
    """pycocotools' per-image matching of ``results`` to ``coco_gt``, kept for :func:`bootstrap_coco_ap`.

    Args:
        results: COCO result dicts (``image_id``, ``category_id``, ``bbox`` xywh, ``score``).
        coco_gt: a pycocotools ``COCO``, a path to COCO JSON or its dict (crowd objects are
            ignored regions, as in COCO).
        iou_type: ``"bbox"``.
        max_dets: detections kept per image and category (COCO's last ``maxDets``, 100).
        area: the objects that count, as COCO's area ranges: ``"all"``, ``"small"`` (AP_S:
            area below 32²), ``"medium"``, ``"large"``, or ``(lo, hi)`` in squared pixels; objects
            outside it, and unmatched detections outside it, are ignored as COCOeval ignores them.

    Returns:
        A dict: ``"image_ids"`` (``[I]`` list), ``"iou_thresholds"`` (``[T]`` array) and
        ``"categories"``: per category id, ``"image"`` (``[D]`` int, index into ``image_ids``),
        ``"score"`` (``[D]``), ``"tp"`` and ``"ignore"`` (``[T, D]`` bool) and ``"objects"``
        (``[I]`` int, the objects that count in each image).

    Example:
        >>> gt = {"images": [{"id": 1}, {"id": 2}], "categories": [{"id": 7}],
        ...       "annotations": [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [0, 0, 10, 10], "area": 100,
        ...                        "iscrowd": 0}, {"id": 2, "image_id": 2, "category_id": 7,
        ...                        "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 0}]}
        >>> dets = [{"image_id": 1, "category_id": 7, "bbox": [0, 0, 10, 10], "score": 0.9}]
        >>> m = coco_image_matches(dets, gt)
        >>> m["categories"][7]["objects"].tolist(), bool(m["categories"][7]["tp"][:, 0].all())
        ([1, 1], True)
    """
    from pycocotools.cocoeval import COCOeval

    if isinstance(area, str):
        if area not in AREA_RANGES:
            raise ValueError(f"area must be one of {sorted(AREA_RANGES)} or (lo, hi), got {area!r}")
        label, area_range = area, list(AREA_RANGES[area])
    else:
        try:
            lo, hi = (float(v) for v in area)
        except (TypeError, ValueError):
            raise ValueError(f"area must be one of {sorted(AREA_RANGES)} or (lo, hi), got {area!r}") from None
        if not 0 <= lo < hi:
            raise ValueError(f"area (lo, hi) must have 0 <= lo < hi, got {area!r}")
        label, area_range = "custom", [lo, hi]
    gt = _load_gt(coco_gt)
    results = _check_results(list(results), gt, None, "raise", name="results")
    image_ids = sorted(gt.getImgIds())
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(gt, gt.loadRes(results) if results else _empty_results(gt), iou_type)
        ev.params.imgIds = image_ids
        ev.params.areaRng, ev.params.areaRngLbl, ev.params.maxDets = [area_range], [label], [max_dets]
        ev.evaluate()
    t, n = len(ev.params.iouThrs), len(image_ids)
    cats = {}
    for k, cat in enumerate(ev.params.catIds):
        image, score, tp, ignore, objects = [], [], [], [], np.zeros(n, dtype=np.int64)
        for i in range(n):
            e = ev.evalImgs[k * n + i]  # evalImgs: categories x area ranges (one) x images
            if e is None:
                continue
            objects[i] = int(np.count_nonzero(np.asarray(e["gtIgnore"]) == 0))
            d = len(e["dtScores"][:max_dets])
            image.append(np.full(d, i))
            score.append(np.asarray(e["dtScores"][:max_dets], dtype=np.float64))
            tp.append(np.asarray(e["dtMatches"])[:, :d] > 0)
            ignore.append(np.asarray(e["dtIgnore"])[:, :d].astype(bool))
        cats[int(cat)] = {"image": np.concatenate(image or [np.zeros(0, np.int64)]).astype(np.int64),
                          "score": np.concatenate(score or [np.zeros(0)]),
                          "tp": np.concatenate(tp, axis=1) if tp else np.zeros((t, 0), bool),
                          "ignore": np.concatenate(ignore, axis=1) if ignore else np.zeros((t, 0), bool),
                          "objects": objects}
    return {"image_ids": image_ids, "iou_thresholds": np.asarray(ev.params.iouThrs), "categories": cats}


def _empty_results(gt):
    from pycocotools.coco import COCO

    empty = COCO()
    empty.dataset = {"images": gt.dataset["images"], "categories": gt.dataset.get("categories", []),
                     "annotations": []}
    with contextlib.redirect_stdout(io.StringIO()):
        empty.createIndex()
    return empty


def _category_precision(cat: dict, weights: np.ndarray, iou_index) -> tuple[np.ndarray, np.ndarray]:
    """Mean interpolated precision over recall thresholds and the chosen IoU thresholds, ``[B]``,
    and whether the category has objects in each resample ``[B]``, for image weights ``[B, I]``."""
    objects = weights @ cat["objects"]  # [B]
    valid = objects > 0
    b, r = len(weights), len(RECALL_THRESHOLDS)
    if len(cat["score"]) == 0:
        return np.zeros(b), valid
    order = np.argsort(-cat["score"], kind="mergesort")
    tp = cat["tp"][iou_index][:, order]
    keep = ~cat["ignore"][iou_index][:, order]
    w = weights[:, cat["image"][order]].astype(np.float64)  # [B, D]
    tps = np.cumsum(w[:, None, :] * (tp & keep)[None], axis=-1)  # [B, T, D]
    fps = np.cumsum(w[:, None, :] * (~tp & keep)[None], axis=-1)
    recall = tps / np.where(valid, objects, 1)[:, None, None]
    precision = tps / (tps + fps + np.spacing(1))
    precision = np.maximum.accumulate(precision[..., ::-1], axis=-1)[..., ::-1]
    rows, d = recall.shape[0] * recall.shape[1], recall.shape[2]
    offset = 2.0 * np.arange(rows)[:, None]  # every row in its own interval: one searchsorted for all
    idx = np.searchsorted((recall.reshape(rows, d) + offset).ravel(),
                          (RECALL_THRESHOLDS[None] + offset).ravel(), side="left").reshape(rows, r)
    idx -= d * np.arange(rows)[:, None]
    found = idx < d
    q = np.where(found, np.take_along_axis(precision.reshape(rows, d), np.minimum(idx, d - 1), axis=1), 0.0)
    return q.reshape(b, -1).mean(axis=1), valid


def bootstrap_coco_ap(matches: Sequence[dict], *, resamples: int = 1000, seed: int = 0, iou: float | None = None,
                      chunk: int = 2_000_000) -> np.ndarray:
    """COCO AP of each of ``matches`` on the images as they are (column 0) and on ``resamples``
    bootstrap resamples of the images, the same resamples for every entry (paired).

    Args:
        matches: outputs of :func:`coco_image_matches` on the same images and categories.
        resamples: bootstrap resamples ``B``.
        seed: seed of the resampling.
        iou: ``None``: AP over COCO's IoU thresholds 0.5:0.95; a value (e.g. 0.5): AP at that threshold.
        chunk: at most this many (resample, threshold, detection) cells at once (memory).

    Returns:
        ``[len(matches), 1 + B]`` float64 AP in ``[0, 1]`` (column 0: all images once, pycocotools'
        AP; a resample without any object of any category: NaN).

    Example:
        >>> gt = {"images": [{"id": 1}, {"id": 2}], "categories": [{"id": 7}],
        ...       "annotations": [{"id": i, "image_id": i, "category_id": 7, "bbox": [0, 0, 10, 10],
        ...                        "area": 100, "iscrowd": 0} for i in (1, 2)]}
        >>> hit = {"category_id": 7, "bbox": [0, 0, 10, 10], "score": 0.9}
        >>> one = coco_image_matches([{"image_id": 1, **hit}], gt)
        >>> both = coco_image_matches([{"image_id": 1, **hit}, {"image_id": 2, **hit}], gt)
        >>> ap = bootstrap_coco_ap([one, both], resamples=200)
        >>> ap[:, 0].round(3).tolist(), bool((ap[1] == 1).all()), bool(0 <= ap[0].min() <= ap[0].max() <= 1)
        ([0.505, 1.0], True, True)
    """
    if not matches:
        raise ValueError("matches must hold at least one coco_image_matches output, got none")
    ids = matches[0]["image_ids"]
    for j, m in enumerate(matches):
        if m["image_ids"] != ids or sorted(m["categories"]) != sorted(matches[0]["categories"]):
            raise ValueError(f"matches[{j}] is on other images or categories than matches[0]: "
                             "paired resamples need the same test set")
    if isinstance(resamples, bool) or not isinstance(resamples, (int, np.integer)) \
            or not 0 <= resamples <= MAX_RESAMPLES:
        raise ValueError(f"resamples must be an integer in [0, {MAX_RESAMPLES}], got {resamples!r}")
    resamples = int(resamples)
    n = len(ids)
    rng = np.random.default_rng(seed)
    weights = np.ones((1 + resamples, n), dtype=np.int64)
    for b in range(1, 1 + resamples):
        weights[b] = np.bincount(rng.integers(0, n, n), minlength=n)
    thresholds = matches[0]["iou_thresholds"]
    if iou is None:
        iou_index = np.arange(len(thresholds))
    else:
        hit = np.flatnonzero(np.isclose(thresholds, iou))
        if len(hit) == 0:
            raise ValueError(f"iou must be one of COCO's thresholds {thresholds.round(2).tolist()}, got {iou}")
        iou_index = hit[:1]
    out = np.empty((len(matches), 1 + resamples))
    for j, m in enumerate(matches):
        total, count = np.zeros(1 + resamples), np.zeros(1 + resamples)
        for cat in m["categories"].values():
            step = max(1, chunk // max(1, len(iou_index) * len(cat["score"])))
            for s in range(0, 1 + resamples, step):
                ap, valid = _category_precision(cat, weights[s:s + step], iou_index)
                total[s:s + step] += np.where(valid, ap, 0.0)
                count[s:s + step] += valid
        with np.errstate(invalid="ignore", divide="ignore"):
            out[j] = total / count
    return out


def _check_level(level) -> None:
    if isinstance(level, bool) or not isinstance(level, (int, float, np.integer, np.floating)) or not 0 < level < 1:
        raise ValueError(f"level must be a number in (0, 1), got {level!r}")


def paired_difference(a: np.ndarray, b: np.ndarray, level: float = 0.95, method: str = "basic") -> dict:
    """Difference ``a - b`` of two rows of :func:`bootstrap_coco_ap` (or of means of rows over seeds):
    the value on the images as they are and a bootstrap interval.

    COCO AP averaged over categories with one or two objects each is biased under resampling
    (a category none of whose images is drawn drops out of the mean; one drawn twice counts its
    objects twice): the resamples' AP can centre away from the AP of the test set, so that the
    plain percentile interval need not even contain the estimate. ``"basic"`` (default; the
    pivotal interval ``[2 d - q_high, 2 d - q_low]``) corrects that shift to first order;
    ``"percentile"`` is ``[q_low, q_high]``. The bootstrap's mean difference is returned too.

    Args:
        a, b: ``[1 + B]`` arrays (column 0: all images once).
        level: coverage of the interval.
        method: ``"basic"`` or ``"percentile"``.

    Returns:
        ``{"difference", "low", "high", "holds", "bootstrap_mean", "method", "resamples_used"}``;
        ``holds``: the interval excludes zero; ``resamples_used``: the resamples whose difference
        is finite (the others, without any object, are left out of the interval; none: a ``ValueError``).

    Example:
        >>> d = paired_difference(np.array([0.5, 0.6, 0.55, 0.45]), np.array([0.3, 0.3, 0.35, 0.3]))
        >>> round(d["difference"], 2), d["holds"], round(d["low"], 3) <= 0.2 <= round(d["high"], 3)
        (0.2, True, True)
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError(f"a and b must be [1 + B] arrays of the same length with B >= 1, got {a.shape} and {b.shape}")
    _check_level(level)
    if method not in ("basic", "percentile"):
        raise ValueError(f"method must be 'basic' or 'percentile', got {method!r}")
    diff = a[1:] - b[1:]
    diff = diff[np.isfinite(diff)]  # a resample without any object is NaN (counted in "resamples_used")
    if diff.size == 0:
        raise ValueError(f"a - b is not finite in any of its {len(a) - 1} resamples (no objects in any resample?); "
                         "no interval can be given")
    d = float(a[0] - b[0])
    q_low, q_high = np.percentile(diff, [50 * (1 - level), 50 * (1 + level)])
    low, high = (2 * d - q_high, 2 * d - q_low) if method == "basic" else (q_low, q_high)
    return {"difference": d, "low": float(low), "high": float(high), "holds": bool(low > 0 or high < 0),
            "bootstrap_mean": float(diff.mean()), "method": method, "resamples_used": int(diff.size)}


def paired_bootstrap(metric, arms_a: Sequence, arms_b: Sequence, num_items: int, *, resamples: int = 1000,
                     seed: int = 0, level: float = 0.95, method: str = "percentile") -> dict:
    """A paired bootstrap over evaluation items (videos, images) of ``metric(a) - metric(b)``, for any
    metric that can be recomputed on a resample of the items (e.g. temporal mAP over videos).

    ``arms_a`` and ``arms_b`` are two arms' runs, paired by seed (lists of equal length);
    ``metric(run, items)`` is the figure of one run on ``items``, an int array of item indices drawn
    with replacement (``np.arange(num_items)``: the observed figure). Each resample draws one set of
    items, shared by both arms and every seed, and takes the difference averaged over seeds; the
    interval is :func:`paired_difference`'s (``method``). A direction *holds* only where the
    interval excludes zero. (For COCO AP over images, :func:`bootstrap_coco_ap` recomputes AP for
    all resamples at once.)

    Returns:
        ``{"diff", "low", "high", "holds", "per_seed", "resamples"}``: ``diff`` the observed
        difference averaged over seeds, ``holds`` ``"a>b"``, ``"a<b"`` or ``None``, ``per_seed``
        each seed's observed difference (their spread is the seeds', beside the items').

    Example:
        >>> import numpy as np
        >>> items = np.random.default_rng(0).normal(0, 10, 40)  # hard and easy items; a is 0.5 better on each
        >>> out = paired_bootstrap(lambda run, idx: run[idx].mean(), [items + 0.5], [items], 40, resamples=200)
        >>> round(out["diff"], 3), round(out["low"], 3), out["holds"]
        (0.5, 0.5, 'a>b')
    """
    if len(arms_a) != len(arms_b) or not len(arms_a):
        raise ValueError(f"arms_a and arms_b must be non-empty and paired by seed, got {len(arms_a)} and {len(arms_b)}")
    for name, value, lo in (("num_items", num_items, 1), ("resamples", resamples, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= MAX_RESAMPLES:
            raise ValueError(f"{name} must be an integer in [{lo}, {MAX_RESAMPLES}], got {value!r}")
    _check_level(level)
    every = np.arange(num_items)
    per_seed = [float(metric(a, every) - metric(b, every)) for a, b in zip(arms_a, arms_b)]
    draws = np.random.default_rng(seed).integers(0, num_items, (resamples, num_items))
    diffs = [np.mean([metric(a, d) - metric(b, d) for a, b in zip(arms_a, arms_b)]) for d in draws]
    d = paired_difference(np.array([np.mean(per_seed), *diffs]), np.zeros(1 + resamples), level, method)
    holds = None if not d["holds"] else "a>b" if d["low"] > 0 else "a<b"
    return {"diff": d["difference"], "low": d["low"], "high": d["high"], "holds": holds, "per_seed": per_seed,
            "resamples": resamples}
