"""Readers of temporal annotations into the per-video dict format of
:mod:`scalekit.evaluation.temporal`."""

from __future__ import annotations

import csv
import json
import os
import re
import warnings
from collections.abc import Mapping

import numpy as np

__all__ = ["read_class_segments", "read_segments_csv", "read_activitynet", "read_thumos14"]


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


def _one_line(message: str) -> None:
    warnings.warn(message, UserWarning, stacklevel=3)


def read_activitynet(ground_truth, results=None, *, subset: str | None = "validation", classes=None):
    """ActivityNet JSON: ground truth (``database``) and, optionally, results.

    Every prediction is kept, whatever its video and class: predictions on
    videos outside the ground truth (or outside ``subset``) stay in the
    detections, where :func:`~scalekit.evaluation.tiou_map` counts them as
    false positives, as ActivityNet's evaluator does; labels the ground truth
    lacks get ids after the ground truth's (they end in ``ignored_classes``).
    When there are such predictions, one warning line says how many and what
    was done with them.

    Args:
        ground_truth: the ground-truth JSON (path or dict) with ``"database"``.
        results: the results JSON (path or dict) with ``"results"``, or ``None``.
        subset: videos of this subset only (``None``: all).
        classes: label name -> id mapping or list of names; default: the
            ground truth's names sorted, then the other predicted names sorted.

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
    res = None
    if results is not None:
        res = _load_json(results)
        if not isinstance(res, Mapping) or "results" not in res:
            raise ValueError("results must be ActivityNet JSON with a 'results' key")
        if not isinstance(res["results"], Mapping):
            raise ValueError("results['results'] must map video ids to lists of predictions")
    names = [a["label"] for e in videos.values() for a in e.get("annotations", [])]
    if classes is None:
        index = {n: i for i, n in enumerate(sorted(set(names), key=str))}
        extra = {a["label"] for entries in (res["results"].values() if res else ()) for a in entries} - set(index)
        index.update({n: len(index) + i for i, n in enumerate(sorted(extra, key=str))})
    else:
        index = _class_index(names, classes)

    def side(vid, entries, with_scores):
        labels, segs, scores = [], [], []
        for k, a in enumerate(entries):
            if a["label"] not in index:
                raise ValueError(f"video {vid!r}, entry {k}: label {a['label']!r} is not one of the "
                                 f"{len(index)} classes given in classes=")
            labels.append(index[a["label"]])
            segs.append(a["segment"])
            if with_scores:
                scores.append(a["score"])
        d = {"labels": np.asarray(labels, dtype=np.int64), "segments": np.asarray(segs, dtype=np.float64).reshape(-1, 2)}
        if with_scores:
            d["scores"] = np.asarray(scores, dtype=np.float64)
        return d

    gt = {v: side(v, e.get("annotations", []), False) for v, e in videos.items()}
    det = None
    if res is not None:
        det = {v: side(v, entries, True) for v, entries in res["results"].items()}
        gt_labels = set(names)
        outside = [(v, len(e)) for v, e in res["results"].items() if v not in gt and len(e)]
        no_gt = [a["label"] for e in res["results"].values() for a in e if a["label"] not in gt_labels]
        said = []
        if outside:
            where = "the ground truth" if subset is None else f"the {subset!r} ground truth"
            said.append(f"{sum(n for _, n in outside)} predictions on {len(outside)} videos not in {where} "
                        f"kept (tiou_map counts them as false positives, as the official tools do)")
        if no_gt:
            said.append(f"{len(no_gt)} predictions of {len(set(no_gt))} classes without ground truth kept "
                        f"(tiou_map lists them in ignored_classes)")
        if said:
            _one_line("read_activitynet: " + "; ".join(said))
    return gt, det, index


def read_thumos14(annotation_dir, detections=None, *, subset: str = "test"):
    """THUMOS14's annotation folder and, optionally, a detection file, as its kit reads them.

    ``annotation_dir`` holds ``detclasslist.txt`` (``"id name"`` lines),
    ``<name>_<subset>.txt`` per class and ``Ambiguous_<subset>.txt``
    (``"video start end"`` lines, seconds). The detection file has
    ``"video start end class_id score"`` lines; a ``.mp4`` or ``.mpeg`` suffix on the
    video name is dropped, as the kits do. Class ids are THUMOS' own (7 =
    BaseballPitch, ...). Evaluate with ``tiou_map(det, gt, protocol="thumos14",
    ambiguous=ambiguous, classes=class_to_id)``.

    Returns:
        ``(ground_truth, detections or None, class_to_id, ambiguous)``, where
        ``ambiguous`` is ``{video_id: float[N, 2]}``. Ground truth keeps the
        files' order within each video (the kit matches ground truths in that
        order). A detection whose class id is not in ``detclasslist.txt`` raises.

    Example:
        >>> import os, tempfile
        >>> d = tempfile.mkdtemp()
        >>> for name, text in {"detclasslist.txt": "7 BaseballPitch\\n", "Ambiguous_test.txt": "",
        ...                    "BaseballPitch_test.txt": "video_test_1 10.0 20.0\\n",
        ...                    "det.txt": "video_test_1.mp4 11.0 19.0 7 0.9\\n"}.items():
        ...     _ = open(os.path.join(d, name), "w").write(text)
        >>> gt, det, ids, amb = read_thumos14(d, os.path.join(d, "det.txt"))
        >>> ids, gt["video_test_1"]["segments"].tolist(), list(det)
        ({'BaseballPitch': 7}, [[10.0, 20.0]], ['video_test_1'])
    """
    def rows(path, columns):
        if not os.path.exists(path):
            raise FileNotFoundError(f"no such THUMOS14 file: {path}")
        out = []
        with open(path) as f:
            for line_no, line in enumerate(f, start=1):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) != columns:
                    raise ValueError(f"{path}:{line_no}: {columns} fields expected, got {line.strip()!r}")
                out.append(parts)
        return out

    index = {}
    for cid, name in rows(os.path.join(annotation_dir, "detclasslist.txt"), 2):
        index[name] = int(cid)
    gt: dict = {}
    for name, cid in index.items():
        for vid, t1, t2 in rows(os.path.join(annotation_dir, f"{name}_{subset}.txt"), 3):
            entry = gt.setdefault(vid, {"labels": [], "segments": []})
            entry["labels"].append(cid)
            entry["segments"].append([float(t1), float(t2)])
    ambiguous: dict = {}
    for vid, t1, t2 in rows(os.path.join(annotation_dir, f"Ambiguous_{subset}.txt"), 3):
        ambiguous.setdefault(vid, []).append([float(t1), float(t2)])
        gt.setdefault(vid, {"labels": [], "segments": []})
    for entry in gt.values():
        entry["labels"] = np.asarray(entry["labels"], dtype=np.int64)
        entry["segments"] = np.asarray(entry["segments"], dtype=np.float64).reshape(-1, 2)
    ambiguous = {v: np.asarray(s, dtype=np.float64).reshape(-1, 2) for v, s in ambiguous.items()}
    det = None
    if detections is not None:
        det = {}
        ids = set(index.values())
        for k, (vid, t1, t2, cid, score) in enumerate(rows(detections, 5)):
            if int(cid) not in ids:
                raise ValueError(f"{detections}: line {k + 1}: class id {cid} is not in detclasslist.txt")
            vid = re.sub(r"\.(mp4|mpeg)$", "", vid)
            entry = det.setdefault(vid, {"labels": [], "segments": [], "scores": []})
            entry["labels"].append(int(cid))
            entry["segments"].append([float(t1), float(t2)])
            entry["scores"].append(float(score))
        for entry in det.values():
            entry["labels"] = np.asarray(entry["labels"], dtype=np.int64)
            entry["segments"] = np.asarray(entry["segments"], dtype=np.float64).reshape(-1, 2)
            entry["scores"] = np.asarray(entry["scores"], dtype=np.float64)
    return gt, det, index, ambiguous
