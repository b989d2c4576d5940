"""Readers of temporal annotations into the per-video dict format of
:mod:`scalekit.evaluation.temporal`."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping

import numpy as np

__all__ = ["read_class_segments", "read_segments_csv", "read_activitynet"]


def _load_json(source):
    if isinstance(source, (str, os.PathLike)):
        if not os.path.exists(source):
            raise FileNotFoundError(f"no such annotation file: {source}")
        with open(source) as f:
            return json.load(f)
    return source


def _class_index(names, classes):
    if classes is None:
        return {n: i for i, n in enumerate(sorted(set(names), key=str))}
    return dict(classes) if isinstance(classes, Mapping) else {n: i for i, n in enumerate(classes)}


def read_class_segments(source, classes=None) -> tuple[dict, dict]:
    """Per-class interval lists, MPII Cooking 2 / MERL Shopping style.

    ``source`` is ``{video_id: {class: [[start_frame, end_frame], ...]}}`` (a
    dict or a JSON file of it); classes may be ids or names. Frame ranges are
    kept as given (they are inclusive in both datasets: evaluate with
    ``inclusive_end=True``).

    Args:
        source: the dict or a path to its JSON.
        classes: class name -> id mapping, or a list of names (id = position);
            default: sorted class keys.

    Returns:
        ``(ground_truth, class_to_id)``.

    Example:
        >>> gt, ids = read_class_segments({"s08-d02": {"cut": [[10, 40], [90, 120]], "peel": [[50, 80]]}})
        >>> ids, gt["s08-d02"]["labels"].tolist(), gt["s08-d02"]["segments"].tolist()
        ({'cut': 0, 'peel': 1}, [0, 0, 1], [[10.0, 40.0], [90.0, 120.0], [50.0, 80.0]])
    """
    data = _load_json(source)
    if not isinstance(data, Mapping):
        raise ValueError("source must map video ids to {class: [[start, end], ...]}")
    names = [c for per in data.values() for c in per]
    index = _class_index(names, classes)
    out = {}
    for vid, per_class in data.items():
        labels, segs = [], []
        for cls, intervals in per_class.items():
            if cls not in index:
                raise ValueError(f"video {vid!r}: unknown class {cls!r}")
            arr = np.asarray(intervals, dtype=np.float64).reshape(-1, 2)
            labels += [index[cls]] * len(arr)
            segs.append(arr)
        out[vid] = {"labels": np.asarray(labels, dtype=np.int64),
                    "segments": np.concatenate(segs) if segs else np.zeros((0, 2))}
    return out, index


def read_segments_csv(path, *, video: str = "video", start: str = "start_frame", end: str = "end_frame",
                      label: str = "class", score: str | None = None, classes=None) -> tuple[dict, dict]:
    """Interval annotations (or detections, with ``score``) from a CSV with a header row.

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "gt.csv")
        >>> _ = open(path, "w").write("video,start_frame,end_frame,class\\nv1,10,40,3\\nv1,50,60,5\\n")
        >>> gt, ids = read_segments_csv(path, classes={3: 3, 5: 5})
        >>> gt["v1"]["labels"].tolist(), gt["v1"]["segments"].tolist()
        ([3, 5], [[10.0, 40.0], [50.0, 60.0]])
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such annotation file: {path}")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    needed = [video, start, end, label] + ([score] if score else [])
    if rows and any(col not in rows[0] for col in needed):
        raise ValueError(f"{path}: columns {needed} expected, found {list(rows[0])}")

    def key(v):
        try:
            return int(v)
        except ValueError:
            return v

    index = _class_index([key(r[label]) for r in rows], classes)
    out: dict = {}
    for line, r in enumerate(rows, start=2):
        cls = key(r[label])
        if cls not in index:
            raise ValueError(f"{path}:{line}: unknown class {cls!r}")
        entry = out.setdefault(r[video], {"labels": [], "segments": [], **({"scores": []} if score else {})})
        entry["labels"].append(index[cls])
        entry["segments"].append([float(r[start]), float(r[end])])
        if score:
            entry["scores"].append(float(r[score]))
    for entry in out.values():
        for k, dtype in (("labels", np.int64), ("segments", np.float64), ("scores", np.float64)):
            if k in entry:
                entry[k] = np.asarray(entry[k], dtype=dtype).reshape((-1, 2) if k == "segments" else (-1,))
    return out, index


def read_activitynet(ground_truth, results=None, *, subset: str = "validation", classes=None):
    """ActivityNet JSON: ground truth (``database``) and, optionally, results.

    Args:
        ground_truth: the ground-truth JSON (path or dict) with ``"database"``.
        results: the results JSON (path or dict) with ``"results"``, or ``None``.
        subset: videos of this subset only (``None``: all).
        classes: label name -> id mapping or list of names; default sorted names.

    Returns:
        ``(ground_truth, detections or None, class_to_id)``, segments in seconds.

    Example:
        >>> gt_json = {"database": {"v1": {"subset": "validation", "annotations": [
        ...     {"segment": [1.5, 9.0], "label": "Long jump"}]}}}
        >>> res_json = {"results": {"v1": [{"segment": [1.0, 8.0], "label": "Long jump", "score": 0.8}]}}
        >>> gt, det, ids = read_activitynet(gt_json, res_json)
        >>> ids, det["v1"]["scores"].tolist()
        ({'Long jump': 0}, [0.8])
    """
    data = _load_json(ground_truth)
    if not isinstance(data, Mapping) or "database" not in data:
        raise ValueError("ground_truth must be ActivityNet JSON with a 'database' key")
    videos = {v: e for v, e in data["database"].items() if subset is None or e.get("subset") == subset}
    names = [a["label"] for e in videos.values() for a in e.get("annotations", [])]
    index = _class_index(names, classes)

    def side(entries, with_scores):
        labels, segs, scores = [], [], []
        for a in entries:
            if a["label"] not in index:
                raise ValueError(f"unknown label {a['label']!r}")
            labels.append(index[a["label"]])
            segs.append(a["segment"])
            if with_scores:
                scores.append(a["score"])
        d = {"labels": np.asarray(labels, dtype=np.int64), "segments": np.asarray(segs, dtype=np.float64).reshape(-1, 2)}
        if with_scores:
            d["scores"] = np.asarray(scores, dtype=np.float64)
        return d

    gt = {v: side(e.get("annotations", []), False) for v, e in videos.items()}
    det = None
    if results is not None:
        res = _load_json(results)
        if not isinstance(res, Mapping) or "results" not in res:
            raise ValueError("results must be ActivityNet JSON with a 'results' key")
        det = {v: side(entries, True) for v, entries in res["results"].items() if v in gt}
    return gt, det, index
