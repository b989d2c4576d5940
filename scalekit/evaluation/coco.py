"""COCO detection metrics through pycocotools' ``COCOeval``."""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Mapping, Sequence

import numpy as np

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
    if isinstance(coco_gt, (str, os.PathLike)):
        if not os.path.exists(coco_gt):
            raise FileNotFoundError(f"coco_gt: no such annotation file: {coco_gt}")
        with open(coco_gt) as f:
            coco_gt = json.load(f)
    if not isinstance(coco_gt, Mapping) or "annotations" not in coco_gt or "images" not in coco_gt:
        raise ValueError("coco_gt must be a pycocotools COCO, a path to a COCO JSON, or a dict with "
                         "'images', 'annotations' and 'categories'")
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
    results = []
    for image_id, pred in predictions.items():
        arrays = {}
        for key in ("boxes", "scores", "labels"):
            if key not in pred:
                raise ValueError(f"predictions[{image_id!r}] must have 'boxes', 'scores' and 'labels'")
            v = pred[key]
            arrays[key] = np.asarray(v.detach().cpu() if hasattr(v, "detach") else v)
        boxes = arrays["boxes"].astype(np.float64).reshape(-1, 4)
        n = boxes.shape[0]
        if arrays["scores"].shape != (n,) or arrays["labels"].shape != (n,):
            raise ValueError(f"predictions[{image_id!r}]: boxes [N, 4], scores [N] and labels [N] must agree")
        if not np.isfinite(boxes).all() or np.isnan(arrays["scores"].astype(np.float64)).any():
            raise ValueError(f"predictions[{image_id!r}]: boxes and scores must be finite")
        xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1)
        labels = [int(c) for c in arrays["labels"].tolist()]
        if label_to_category is not None:
            unknown = sorted({c for c in labels if c not in label_to_category})
            if unknown:
                raise ValueError(f"predictions[{image_id!r}]: labels {unknown} are not in label_to_category "
                                 f"(which has {len(label_to_category)} labels)")
            labels = [int(label_to_category[c]) for c in labels]
        for b, s, c in zip(xywh.tolist(), arrays["scores"].tolist(), labels):
            results.append({"image_id": image_id, "category_id": c, "bbox": b, "score": float(s)})
    return results


def coco_evaluate(predictions, coco_gt, iou_type: str = "bbox", *, verbose: bool = False,
                  backend: str = "pycocotools") -> dict:
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
    if isinstance(predictions, (str, os.PathLike)):
        if not os.path.exists(predictions):
            raise FileNotFoundError(f"predictions: no such result file: {predictions}")
        with open(predictions) as f:
            predictions = json.load(f)
    if isinstance(predictions, Mapping):
        predictions = to_coco_results(predictions)
    if not isinstance(predictions, Sequence):
        raise TypeError("predictions must be a dict of per-image tensors, a list of COCO results or a path")
    known = set(gt.getImgIds())
    for r in predictions:
        if r.get("image_id") not in known:
            raise ValueError(f"predictions: image_id {r.get('image_id')!r} is not in the ground truth")
    if len(predictions) == 0:
        return {**{k: 0.0 for k in STAT_NAMES}, "per_class": {c: 0.0 for c in gt.getCatIds()}}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        dt = gt.loadRes(list(predictions))
        ev = COCOeval(gt, dt, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
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
