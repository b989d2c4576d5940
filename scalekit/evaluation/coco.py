"""COCO detection metrics through pycocotools' ``COCOeval``."""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from collections.abc import Mapping, Sequence

import numpy as np

from scalekit._json import load_json
from scalekit.progress import progress as progress_bar

__all__ = ["coco_evaluate", "to_coco_results"]

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


BACKENDS = ("pycocotools", "faster_coco_eval")


def _load_gt(coco_gt, backend: str = "pycocotools"):
    if backend == "faster_coco_eval":
        from faster_coco_eval import COCO
    else:
        from pycocotools.coco import COCO

    if isinstance(coco_gt, COCO):
        return coco_gt
    if hasattr(coco_gt, "dataset") and hasattr(coco_gt, "getImgIds"):  # the other backend's COCO
        coco_gt = coco_gt.dataset
    coco_gt = load_json(coco_gt, "coco_gt")
    if not isinstance(coco_gt, Mapping) or "annotations" not in coco_gt or "images" not in coco_gt:
        raise ValueError("coco_gt must be a pycocotools COCO, a path to a COCO JSON, or a dict with "
                         "'images', 'annotations' and 'categories'")
    for key, needed in (("images", ("id",)), ("annotations", ("id", "image_id", "category_id", "bbox")),
                        ("categories", ("id",))):
        items = coco_gt.get(key, [])
        if not isinstance(items, list):
            raise ValueError(f"coco_gt[{key!r}] must be a list, got {type(items).__name__}")
        for i, item in enumerate(items):
            missing = [k for k in needed if not isinstance(item, Mapping) or k not in item]
            if missing:
                raise ValueError(f"coco_gt[{key!r}][{i}] has no {missing}: each of {key} needs {list(needed)}")
    gt = COCO()
    # COCOeval writes an 'ignore' key into the annotation dicts: copy those
    # (shallowly) so that the caller's dict is left as it was.
    gt.dataset = {**coco_gt, "annotations": [dict(a) for a in coco_gt["annotations"]]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


def to_coco_results(predictions: Mapping, label_to_category: Mapping | None = None) -> list[dict]:
    """``{image_id: {"boxes": [N, 4] xyxy, "scores": [N], "labels": [N]}}`` as COCO result dicts.

    Args:
        predictions: per image id, the detections (tensors, arrays or lists).
        label_to_category: maps the detector's contiguous labels back to the
            dataset's category ids (``CocoDetection.label_to_category``);
            ``None``: labels are category ids already. A label it lacks raises.

    Example:
        >>> to_coco_results({7: {"boxes": [[10.0, 20.0, 30.0, 60.0]], "scores": [0.9], "labels": [3]}})
        [{'image_id': 7, 'category_id': 3, 'bbox': [10.0, 20.0, 20.0, 40.0], 'score': 0.9}]
        >>> to_coco_results({7: {"boxes": [[10.0, 20.0, 30.0, 60.0]], "scores": [0.9], "labels": [3]}}, {3: 90})
        [{'image_id': 7, 'category_id': 90, 'bbox': [10.0, 20.0, 20.0, 40.0], 'score': 0.9}]
    """
    if not isinstance(predictions, Mapping):
        raise TypeError(f"predictions must be a dict {{image_id: {{'boxes', 'scores', 'labels'}}}}, "
                        f"got {type(predictions).__name__}")
    results = []
    for image_id, pred in predictions.items():
        if not isinstance(pred, Mapping):
            raise TypeError(f"predictions[{image_id!r}] must be a dict with 'boxes', 'scores' and 'labels', "
                            f"got {type(pred).__name__}")
        arrays = {}
        for key in ("boxes", "scores", "labels"):
            if key not in pred:
                raise ValueError(f"predictions[{image_id!r}] must have 'boxes', 'scores' and 'labels'")
            v = pred[key]
            arrays[key] = np.asarray(v.detach().cpu() if hasattr(v, "detach") else v)
        boxes = arrays["boxes"]
        if boxes.size == 0:
            boxes = boxes.reshape(0, 4)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"predictions[{image_id!r}]['boxes'] must have shape [N, 4] (x1, y1, x2, y2), "
                             f"got {boxes.shape}")
        boxes = boxes.astype(np.float64)
        n = boxes.shape[0]
        if arrays["scores"].size and not (np.issubdtype(arrays["scores"].dtype, np.number)
                                          and arrays["scores"].dtype != bool):
            raise TypeError(f"predictions[{image_id!r}]['scores'] must be numbers, got {arrays['scores'].dtype}")
        if arrays["scores"].shape != (n,) or arrays["labels"].shape != (n,):
            raise ValueError(f"predictions[{image_id!r}]: boxes [N, 4], scores [N] and labels [N] must agree")
        if not np.isfinite(boxes).all() or np.isnan(arrays["scores"].astype(np.float64)).any():
            raise ValueError(f"predictions[{image_id!r}]: boxes and scores must be finite")
        xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1)
        lab = arrays["labels"]
        if lab.size and (lab.dtype == bool or not np.issubdtype(lab.dtype, np.number)):
            raise TypeError(f"predictions[{image_id!r}]['labels'] must be integers, got {lab.dtype}")
        if lab.size and not np.issubdtype(lab.dtype, np.integer):  # float labels (a .float() on the dict)
            whole = np.isfinite(lab) & (lab == np.round(lab))
            if not whole.all():
                raise ValueError(f"predictions[{image_id!r}]['labels'] must be whole numbers, got "
                                 f"{lab[~whole][:5].tolist()}")
        labels = [int(c) for c in lab.tolist()]
        if label_to_category is not None:
            unknown = sorted({c for c in labels if c not in label_to_category})
            if unknown:
                raise ValueError(f"predictions[{image_id!r}]: labels {unknown} are not in label_to_category "
                                 f"(which has {len(label_to_category)} labels)")
            labels = [int(label_to_category[c]) for c in labels]
        for b, s, c in zip(xywh.tolist(), arrays["scores"].tolist(), labels):
            results.append({"image_id": image_id, "category_id": c, "bbox": b, "score": float(s)})
    return results


WRONG_FORMAT_FRACTION = 0.5
"""Warn about the box format when more than this fraction of the predicted boxes look wrong."""


UNKNOWN_CATEGORIES = ("raise", "ignore")


def _check_results(results: list, gt, boxes_xyxy: np.ndarray | None, unknown_categories: str = "raise",
                   name: str = "predictions") -> list:
    """Category ids among the ground truth's (else raise); boxes that look like the wrong format (warn).

    The box rule (documented in :func:`coco_evaluate`): ``boxes_xyxy`` (the
    ``[N, 4]`` boxes of dict predictions) look like xywh when more than
    :data:`WRONG_FORMAT_FRACTION` of them have ``x2 < x1`` or ``y2 < y1``;
    COCO result boxes (``[x, y, w, h]``) look like xyxy when more than that
    fraction of those on images with a size end more than 10% beyond the image
    (``x + w > 1.1 width`` or ``y + h > 1.1 height``), or when any has a
    negative width or height.
    """
    images = set(gt.getImgIds())
    for i, r in enumerate(results):
        if not isinstance(r, Mapping) or any(k not in r for k in ("image_id", "category_id", "score")):
            raise ValueError(f"{name}[{i}] must be a COCO result dict with 'image_id', 'category_id', "
                             f"'score' and 'bbox' (or 'segmentation' / 'keypoints'), got {r!r}")
        if r["image_id"] not in images:
            raise ValueError(f"{name}: image_id {r['image_id']!r} is not in the ground truth")
        try:
            finite = math.isfinite(r["score"]) and all(math.isfinite(v) for v in r.get("bbox", ()))
        except TypeError:
            raise ValueError(f"{name}[{i}]: 'score' and 'bbox' must be numbers, got {r!r}") from None
        if not finite:  # pycocotools would score it as a number: refused rather than counted silently
            raise ValueError(f"{name}[{i}]: 'score' and 'bbox' must be finite, got {r!r}")
    known = set(gt.getCatIds())
    predicted = {r["category_id"] for r in results}
    unknown = sorted(predicted - known, key=str)
    if unknown and unknown_categories == "ignore":
        keep = [r["category_id"] in known for r in results]
        results = [r for r, k in zip(results, keep) if k]
        boxes_xyxy = boxes_xyxy[np.asarray(keep, dtype=bool)] if boxes_xyxy is not None else None
    elif unknown:
        raise ValueError(
            f"{name}: category ids {unknown[:10]}{' ...' if len(unknown) > 10 else ''} are not among the "
            f"ground truth's {len(known)} category ids ({sorted(known)[:10]}{' ...' if len(known) > 10 else ''}); "
            f"pycocotools would count them as nothing and return AP 0. A detector's labels are contiguous 1..C: "
            f"map them back with to_coco_results(predictions, label_to_category) "
            f"(CocoDetection.label_to_category), then pass the result here; to evaluate on a subset of the "
            f"categories, leaving the others' predictions out, pass unknown_categories='ignore'")
    if boxes_xyxy is not None:
        n = boxes_xyxy.shape[0]
        flipped = int(((boxes_xyxy[:, 2] < boxes_xyxy[:, 0]) | (boxes_xyxy[:, 3] < boxes_xyxy[:, 1])).sum())
        if n and flipped > WRONG_FORMAT_FRACTION * n:
            warnings.warn(f"coco_evaluate: {flipped} of {n} predicted boxes have x2 < x1 or y2 < y1: predictions' "
                          f"'boxes' must be (x1, y1, x2, y2); if they are (x, y, width, height), convert them with "
                          f"torchvision.ops.box_convert(boxes, 'xywh', 'xyxy')", UserWarning, stacklevel=3)
        return results
    boxes = [(r["image_id"], r["bbox"]) for r in results if "bbox" in r]
    if not boxes:
        return results
    try:
        xywh = np.asarray([b for _, b in boxes], dtype=np.float64).reshape(-1, 4)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: every 'bbox' must be [x, y, width, height] (4 numbers)") from None
    if xywh.shape[0] != len(boxes):
        raise ValueError(f"{name}: every 'bbox' must be [x, y, width, height] (4 numbers)")
    negative = int(((xywh[:, 2] < 0) | (xywh[:, 3] < 0)).sum())
    sizes = {i: (img.get("width"), img.get("height")) for i, img in gt.imgs.items()}
    wh = np.asarray([sizes.get(i, (None, None)) for i, _ in boxes], dtype=np.float64)  # None -> nan
    has = np.isfinite(wh).all(1)
    beyond = int(((xywh[has, 0] + xywh[has, 2] > 1.1 * wh[has, 0]) | (xywh[has, 1] + xywh[has, 3] > 1.1 * wh[has, 1])).sum())
    if negative or (has.any() and beyond > WRONG_FORMAT_FRACTION * int(has.sum())):
        what = f"{negative} have a negative width or height" if negative else \
            f"{beyond} of {int(has.sum())} end more than 10% beyond their image"
        warnings.warn(f"coco_evaluate: of the predicted COCO boxes, {what}: COCO results are [x, y, width, height]; "
                      f"boxes (x1, y1, x2, y2) go through to_coco_results, which converts them", UserWarning,
                      stacklevel=3)
    return results


def coco_evaluate(predictions, coco_gt, iou_type: str = "bbox", *, verbose: bool = False,
                  backend: str = "pycocotools", progress: bool = False,
                  unknown_categories: str = "raise") -> dict:
    """COCO AP/AR of detections, with per-class AP; a thin layer over pycocotools.

    Args:
        predictions: ``{image_id: {"boxes": [N, 4] (x1, y1, x2, y2), "scores":
            [N], "labels": [N] category ids}}`` (tensors or arrays), a list of
            COCO result dicts, or a path to a COCO result JSON.
        coco_gt: a ``pycocotools.coco.COCO``, a path to a COCO annotation JSON,
            or its dict.
        iou_type: ``"bbox"`` (``"segm"`` and ``"keypoints"`` pass through to
            ``COCOeval`` with COCO result dicts).
        verbose: print pycocotools' summary table.
        backend: ``"pycocotools"`` or ``"faster_coco_eval"`` (the C++ ``COCOeval``
            of the ``faster-coco-eval`` package, an optional dependency: same
            numbers, faster on large sets).
        unknown_categories: ``"raise"`` (default) when a prediction's category
            id is not among the ground truth's, or ``"ignore"``: leave such
            predictions out (pycocotools' silent behaviour), to evaluate on a
            subset of the categories a detector knows.
        progress: show a progress bar over the stages (load, evaluate,
            accumulate, summarize) on stderr (:func:`scalekit.progress.progress`).

    Raises:
        ValueError: a predicted category id the ground truth does not have
            (contiguous detector labels not mapped back with
            :func:`to_coco_results`'s ``label_to_category``): pycocotools
            would silently give AP 0.

    Warns:
        UserWarning: when the boxes look like the wrong format: more than half
            of the dict predictions' boxes have ``x2 < x1`` or ``y2 < y1``
            (xywh given as xyxy), or more than half of the COCO result boxes
            end more than 10% beyond their image, or any has a negative width
            (xyxy given as xywh). Correct predictions of a working detector
            stay far below half.

    Returns:
        ``{"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100",
        "ARs", "ARm", "ARl"}`` as pycocotools' ``stats`` (-1 where COCO has
        nothing to measure), and ``"per_class"``: ``{category_id: AP}`` at IoU
        0.5:0.95, area all, 100 detections. No predictions at all give 0.

    Example:
        >>> gt = {"images": [{"id": 1, "width": 100, "height": 100}],
        ...       "categories": [{"id": 1, "name": "a"}],
        ...       "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 40, 40],
        ...                        "area": 1600, "iscrowd": 0}]}
        >>> r = coco_evaluate({1: {"boxes": [[10.0, 10, 50, 50]], "scores": [0.9], "labels": [1]}}, gt)
        >>> round(r["AP"], 6), {c: round(ap, 6) for c, ap in r["per_class"].items()}
        (1.0, {1: 1.0})
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "faster_coco_eval":
        try:
            from faster_coco_eval import COCOeval_faster
        except ImportError as e:
            raise ImportError("backend='faster_coco_eval' needs the faster-coco-eval package: "
                              "pip install faster-coco-eval") from e

        def COCOeval(gt, dt, iou_type):  # noqa: N802
            return COCOeval_faster(gt, dt, iou_type, print_function=print)
    else:
        from pycocotools.cocoeval import COCOeval

    gt = _load_gt(coco_gt, backend)
    predictions = load_json(predictions, "predictions", "result")
    boxes_xyxy = None
    if isinstance(predictions, Mapping):
        results = to_coco_results(predictions)
        boxes_xyxy = np.asarray([r["bbox"] for r in results], dtype=np.float64).reshape(-1, 4)
        boxes_xyxy[:, 2:] += boxes_xyxy[:, :2]
        predictions = results
    if not isinstance(predictions, Sequence) or isinstance(predictions, (str, bytes)):
        raise TypeError("predictions must be a dict of per-image tensors, a list of COCO results or a path")
    if unknown_categories not in UNKNOWN_CATEGORIES:
        raise ValueError(f"unknown_categories must be one of {UNKNOWN_CATEGORIES}, got {unknown_categories!r}")
    predictions = _check_results(list(predictions), gt, boxes_xyxy, unknown_categories)
    if len(predictions) == 0:
        return {**{k: 0.0 for k in STAT_NAMES}, "per_class": {c: 0.0 for c in gt.getCatIds()}}
    out = io.StringIO()
    state = {}

    def stage(name):
        with contextlib.redirect_stdout(out):
            if name == "load":
                state["ev"] = COCOeval(gt, gt.loadRes(predictions), iou_type)
            else:
                getattr(state["ev"], name)()

    for name in progress_bar(["load", "evaluate", "accumulate", "summarize"], bool(progress), desc="coco_evaluate"):
        stage(name)
    ev = state["ev"]
    if verbose:
        print(out.getvalue(), end="")
    result = {k: float(v) for k, v in zip(STAT_NAMES, ev.stats)}
    precision = ev.eval["precision"]  # [T, R, K, A, M]
    per_class = {}
    for k, cat in enumerate(ev.params.catIds):
        p = precision[:, :, k, 0, -1]
        per_class[int(cat)] = float(p[p > -1].mean()) if (p > -1).any() else -1.0
    result["per_class"] = per_class
    return result
