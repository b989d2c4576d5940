"""Readers of temporal annotations into the per-video dict format of
:mod:`scalekit.evaluation.temporal`."""

from __future__ import annotations

import csv
import itertools
import math
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from operator import itemgetter

import numpy as np

from scalekit._json import load_json, parse_json
from scalekit.evaluation._anet_results import read_results

__all__ = ["read_class_segments", "read_segments_csv", "read_activitynet", "read_thumos14"]


def _number(text, where: str) -> float:
    """float(text), or a ValueError naming where it is (file:line, column)."""
    try:
        return float(text)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {text!r} is not a number") from None


def _segment(value, where: str) -> list:
    """``[start, end]`` as two floats, or a ValueError naming where."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise ValueError(f"{where}: a segment must be [start, end] (2 numbers), got {value!r}")
    if any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in value):
        raise ValueError(f"{where}: a segment must be [start, end] (2 numbers), got {value!r}")
    return [float(value[0]), float(value[1])]


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

    Raises:
        ValueError: an interval that is not ``[start, end]`` (2 numbers; a
            row of 4 is not read as two intervals), naming video, class and row.

    Example:
        >>> gt, ids = read_class_segments({"s08-d02": {"cut": [[10, 40], [90, 120]], "peel": [[50, 80]]}})
        >>> ids, gt["s08-d02"]["labels"].tolist(), gt["s08-d02"]["segments"].tolist()
        ({'cut': 0, 'peel': 1}, [0, 0, 1], [[10.0, 40.0], [90.0, 120.0], [50.0, 80.0]])
    """
    data = load_json(source, "source")
    if not isinstance(data, Mapping):
        raise ValueError(f"source must map video ids to {{class: [[start, end], ...]}}, got {type(data).__name__}")
    for vid, per_class in data.items():
        if not isinstance(per_class, Mapping):
            raise ValueError(f"source[{vid!r}] must map classes to [[start, end], ...], got {type(per_class).__name__}")
    names = [c for per in data.values() for c in per]
    index = _class_index(names, classes)
    out = {}
    for vid, per_class in data.items():
        labels, segs = [], []
        for cls, intervals in per_class.items():
            if cls not in index:
                raise ValueError(f"video {vid!r}: unknown class {cls!r}")
            where = f"source[{vid!r}][{cls!r}]"
            if isinstance(intervals, (str, bytes)) or not isinstance(intervals, Sequence):
                raise ValueError(f"{where} must be a list of [start, end] intervals, got {intervals!r}")
            arr = np.asarray([_segment(row, f"{where}, row {k}") for k, row in enumerate(intervals)],
                             dtype=np.float64).reshape(-1, 2)
            labels += [index[cls]] * len(arr)
            segs.append(arr)
        out[vid] = {"labels": np.asarray(labels, dtype=np.int64),
                    "segments": np.concatenate(segs) if segs else np.zeros((0, 2))}
    return out, index


def read_segments_csv(path, *, video: str = "video", start: str = "start_frame", end: str = "end_frame",
                      label: str = "class", score: str | None = None, classes=None) -> tuple[dict, dict]:
    """Interval annotations (or detections, with ``score``) from a CSV with a header row.

    Every parse error (a missing column, a row of the wrong length, a value
    that is not a number, an unknown class) names the file and the line.

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "gt.csv")
        >>> _ = open(path, "w").write("video,start_frame,end_frame,class\\nv1,10,40,3\\nv1,50,60,5\\n")
        >>> gt, ids = read_segments_csv(path, classes={3: 3, 5: 5})
        >>> gt["v1"]["labels"].tolist(), gt["v1"]["segments"].tolist()
        ([3, 5], [[10.0, 40.0], [50.0, 60.0]])
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"path: no such annotation file: {path}")
    needed = [video, start, end, label] + ([score] if score else [])
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path}: empty file; a header row with columns {needed} expected")
        missing = [col for col in needed if col not in header]
        if missing:
            raise ValueError(f"{path}:1: columns {needed} expected, found {header} (missing {missing})")
        at = {col: header.index(col) for col in needed}
        rows = []  # (line, {column: text})
        for values in reader:
            if not values or all(not v.strip() for v in values):
                continue
            if len(values) != len(header):
                raise ValueError(f"{path}:{reader.line_num}: {len(header)} fields expected (the header's), "
                                 f"got {len(values)}: {values}")
            rows.append((reader.line_num, {col: values[i] for col, i in at.items()}))

    def key(v):
        try:
            return int(v)
        except ValueError:
            return v

    index = _class_index([key(r[label]) for _, r in rows], classes)
    out: dict = {}
    for line, r in rows:
        where = f"{path}:{line}"
        cls = key(r[label])
        if cls not in index:
            raise ValueError(f"{where}: unknown class {cls!r}")
        entry = out.setdefault(r[video], {"labels": [], "segments": [], **({"scores": []} if score else {})})
        entry["labels"].append(index[cls])
        entry["segments"].append([_number(r[start], f"{where}, column {start!r}"),
                                  _number(r[end], f"{where}, column {end!r}")])
        if score:
            entry["scores"].append(_number(r[score], f"{where}, column {score!r}"))
    for entry in out.values():
        for k, dtype in (("labels", np.int64), ("segments", np.float64), ("scores", np.float64)):
            if k in entry:
                entry[k] = np.asarray(entry[k], dtype=dtype).reshape((-1, 2) if k == "segments" else (-1,))
    return out, index


def _one_line(message: str) -> None:
    warnings.warn(message, UserWarning, stacklevel=3)


def _annotations(vid, entry, where: str) -> list:
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where}[{vid!r}] must be a dict with 'subset' and 'annotations', got {type(entry).__name__}")
    anns = entry.get("annotations", [])
    if not isinstance(anns, list):
        raise ValueError(f"{where}[{vid!r}]['annotations'] must be a list, got {type(anns).__name__}")
    for k, a in enumerate(anns):
        if not isinstance(a, Mapping) or "label" not in a or "segment" not in a:
            raise ValueError(f"{where}[{vid!r}]['annotations'][{k}] must be a dict with 'segment' and 'label', got {a!r}")
        if isinstance(a["label"], bool) or not isinstance(a["label"], (str, int)):
            raise ValueError(f"{where}[{vid!r}]['annotations'][{k}]['label'] must be a string, got {a['label']!r}")
        _segment(a["segment"], f"{where}[{vid!r}]['annotations'][{k}]['segment']")
    return anns


def _predictions(results: Mapping):
    """All predictions of ``{video: [{"segment", "label", "score"}, ...]}`` as flat arrays.

    Returns ``(videos, counts, label names, label codes (into the names),
    segments [N, 2], scores [N])``, as :func:`._anet_results.read_results`;
    the fields are gathered in C (``map``/``itemgetter``, one ``np.array`` per
    field), never a Python loop per prediction. Only when that fails is a
    loop run, to name the video and entry at fault.
    """
    videos, lists = list(results.keys()), list(results.values())
    for vid, preds in zip(videos, lists):
        if not isinstance(preds, list):
            raise ValueError(f"results['results'][{vid!r}] must be a list of predictions, got {type(preds).__name__}")
    counts = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
    flat = list(itertools.chain.from_iterable(lists))
    if not flat:
        return videos, counts, [], np.zeros(0, np.int64), np.zeros((0, 2)), np.zeros(0)
    try:
        names = list(map(itemgetter("label"), flat))
        segments = np.array(list(map(itemgetter("segment"), flat)), dtype=np.float64)
        scores = np.array(list(map(itemgetter("score"), flat)), dtype=np.float64)
        if segments.shape != (len(flat), 2) or scores.shape != (len(flat),):
            raise ValueError("shape")
        if not all(isinstance(n, (str, int)) and not isinstance(n, bool) for n in set(names)):
            raise TypeError("label")
    except (KeyError, TypeError, ValueError, IndexError):
        segments = scores = None
    if segments is None or not (np.isfinite(segments).all() and not np.isnan(scores).any()):
        for vid, preds in zip(videos, lists):  # find the first bad entry, to name it
            for k, a in enumerate(preds):
                where = f"results['results'][{vid!r}][{k}]"
                if not isinstance(a, Mapping) or any(key not in a for key in ("segment", "label", "score")):
                    raise ValueError(f"{where} must be a dict with 'segment', 'label' and 'score', got {a!r}")
                seg = _segment(a["segment"], f"{where}['segment']")
                if not all(math.isfinite(x) for x in seg):
                    raise ValueError(f"{where}['segment'] must be finite, got {seg}")
                sc = a["score"]
                if isinstance(sc, bool) or not isinstance(sc, (int, float)) or math.isnan(sc):
                    raise ValueError(f"{where}['score'] must be a number, got {sc!r}")
                if isinstance(a["label"], bool) or not isinstance(a["label"], (str, int)):
                    raise ValueError(f"{where}['label'] must be a string, got {a['label']!r}")
        raise AssertionError("unreachable: a prediction failed to convert but none is malformed")  # pragma: no cover
    uniq = list(dict.fromkeys(names))
    position = {n: i for i, n in enumerate(uniq)}
    codes = np.fromiter(map(position.__getitem__, names), dtype=np.int64, count=len(names))
    return videos, counts, uniq, codes, segments.reshape(-1, 2), scores


def _load_results(results):
    """The predictions of an ActivityNet results file (path) or dict, as :func:`_predictions`."""
    if isinstance(results, (str, os.PathLike)):
        if not os.path.isfile(results):
            raise FileNotFoundError(f"results: no such result file: {results}")
        with open(results, "rb") as f:
            data = f.read()
        fast = read_results(data)
        if fast is not None:
            return fast
        res = parse_json(data, os.fspath(results))
    else:
        res = results
    if not isinstance(res, Mapping) or "results" not in res:
        raise ValueError("results must be ActivityNet JSON with a 'results' key")
    if not isinstance(res["results"], Mapping):
        raise ValueError("results['results'] must map video ids to lists of predictions")
    return _predictions(res["results"])


def read_activitynet(ground_truth, results=None, *, subset: str | None = "validation", classes=None):
    """ActivityNet JSON: ground truth (``database``) and, optionally, results.

    Every prediction is kept, whatever its video and class: predictions on
    videos outside the ground truth (or outside ``subset``) stay in the
    detections, where :func:`~scalekit.evaluation.tiou_map` counts them as
    false positives, as ActivityNet's evaluator does; labels the ground truth
    lacks get ids after the ground truth's (they end in ``ignored_classes``).
    When there are such predictions, one warning line says how many and what
    was done with them.

    A results file of the plain shape (``{"segment": [s, e], "label": l,
    "score": p}`` predictions, no backslash escapes) is read straight into
    arrays, without a Python object per prediction; its numbers, and any
    other file, are parsed by orjson when it is installed (``pip install
    'torch-scalekit[fast-json]'``), else by the standard library's json, with
    the same results: 342,000 predictions (36 MB) are read in about 0.3 s.

    Args:
        ground_truth: the ground-truth JSON (path or dict) with ``"database"``.
        results: the results JSON (path or dict) with ``"results"``, or ``None``.
        subset: videos of this subset only (``None``: all). A subset no video
            has raises (listing the subsets there are); one whose videos have
            no annotations warns (the mAP over it is NaN, as the official tool's).
        classes: label name -> id mapping or list of names; default: the
            ground truth's names sorted, then the other predicted names sorted.

    Returns:
        ``(ground_truth, detections or None, class_to_id)``, segments in seconds.

    Raises:
        ValueError: a malformed entry (no ``"segment"``, a segment that is not
            two numbers, a score that is not a number, ...), naming the video
            and the entry; a file that is not JSON, naming the line.

    Example:
        >>> gt_json = {"database": {"v1": {"subset": "validation", "annotations": [
        ...     {"segment": [1.5, 9.0], "label": "Long jump"}]}}}
        >>> res_json = {"results": {"v1": [{"segment": [1.0, 8.0], "label": "Long jump", "score": 0.8}]}}
        >>> gt, det, ids = read_activitynet(gt_json, res_json)
        >>> ids, det["v1"]["scores"].tolist()
        ({'Long jump': 0}, [0.8])
    """
    data = load_json(ground_truth, "ground_truth")
    if not isinstance(data, Mapping) or "database" not in data:
        raise ValueError("ground_truth must be ActivityNet JSON with a 'database' key")
    database = data["database"]
    if not isinstance(database, Mapping):
        raise ValueError(f"ground_truth['database'] must map video ids to entries, got {type(database).__name__}")
    anns = {v: _annotations(v, e, "ground_truth['database']") for v, e in database.items()}
    if subset is None:
        videos = list(database)
    else:
        videos = [v for v, e in database.items() if e.get("subset") == subset]
        if not videos:
            present = sorted({str(e.get("subset")) for e in database.values()})
            raise ValueError(f"subset={subset!r}: no video of the ground truth is in this subset; the subsets "
                             f"there are {present} (subset=None: all videos)")
        if not any(anns[v] for v in videos):
            _one_line(f"read_activitynet: the {len(videos)} videos of subset {subset!r} have no annotations: "
                      f"the mAP over them is NaN, as ActivityNet's tool gives")
    pred = _load_results(results) if results is not None else None
    names = [a["label"] for v in videos for a in anns[v]]
    if classes is None:
        index = {n: i for i, n in enumerate(sorted(set(names), key=str))}
        extra = (set(pred[2]) - set(index)) if pred is not None else set()
        index.update({n: len(index) + i for i, n in enumerate(sorted(extra, key=str))})
    else:
        index = _class_index(names, classes)
    for n in names:
        if n not in index:
            raise ValueError(f"ground truth label {n!r} is not one of the {len(index)} classes given in classes=")

    gt = {}
    for v in videos:
        labels = np.asarray([index[a["label"]] for a in anns[v]], dtype=np.int64)
        segs = np.asarray([a["segment"] for a in anns[v]], dtype=np.float64).reshape(-1, 2)
        gt[v] = {"labels": labels, "segments": segs}
    det = None
    if pred is not None:
        pred_videos, counts, pred_names, codes, segments, scores = pred
        known = np.asarray([n in index for n in pred_names], dtype=bool)
        if not known.all():
            k = int(np.flatnonzero(~known[codes])[0])
            vi = int(np.searchsorted(np.cumsum(counts), k, "right"))
            raise ValueError(f"results['results'][{pred_videos[vi]!r}][{k - int(counts[:vi].sum())}]: label "
                             f"{pred_names[codes[k]]!r} is not one of the {len(index)} classes given in classes=")
        labels = np.asarray([index[n] for n in pred_names], dtype=np.int64).reshape(-1)[codes]
        ends = np.cumsum(counts)
        det = {}
        for v, lo, hi in zip(pred_videos, (ends - counts).tolist(), ends.tolist()):
            det[v] = {"labels": labels[lo:hi], "segments": segments[lo:hi], "scores": scores[lo:hi]}
        gt_ids = np.asarray(sorted({index[n] for n in names}), dtype=np.int64)
        outside = [(v, n) for v, n in zip(pred_videos, counts.tolist()) if v not in gt and n]
        no_gt = labels[~np.isin(labels, gt_ids)]
        said = []
        if outside:
            where = "the ground truth" if subset is None else f"the {subset!r} ground truth"
            said.append(f"{sum(n for _, n in outside)} predictions on {len(outside)} videos not in {where} "
                        f"kept (tiou_map counts them as false positives, as the official tools do)")
        if no_gt.size:
            said.append(f"{no_gt.size} predictions of {np.unique(no_gt).size} classes without ground truth kept "
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
        order). A detection whose class id is not in ``detclasslist.txt`` raises;
        every parse error names the file and the line.

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
    def rows(path, columns, why=""):
        """(where, fields) of the non-empty lines; where is "path:line"."""
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no such THUMOS14 file: {path}{why}")
        out = []
        with open(path) as f:
            for line_no, line in enumerate(f, start=1):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) != columns:
                    raise ValueError(f"{path}:{line_no}: {columns} fields expected, got {line.strip()!r}")
                out.append((f"{path}:{line_no}", parts))
        return out

    def integer(text, where):
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"{where}: class id {text!r} is not an integer") from None

    index, listed = {}, {}
    for where, (cid, name) in rows(os.path.join(annotation_dir, "detclasslist.txt"), 2):
        index[name] = integer(cid, where)
        listed[name] = where
    gt: dict = {}
    for name, cid in index.items():
        why = f" (the ground truth of class {name!r}, listed at {listed[name]})"
        for where, (vid, t1, t2) in rows(os.path.join(annotation_dir, f"{name}_{subset}.txt"), 3, why):
            entry = gt.setdefault(vid, {"labels": [], "segments": []})
            entry["labels"].append(cid)
            entry["segments"].append([_number(t1, f"{where}, start"), _number(t2, f"{where}, end")])
    ambiguous: dict = {}
    for where, (vid, t1, t2) in rows(os.path.join(annotation_dir, f"Ambiguous_{subset}.txt"), 3):
        ambiguous.setdefault(vid, []).append([_number(t1, f"{where}, start"), _number(t2, f"{where}, end")])
        gt.setdefault(vid, {"labels": [], "segments": []})
    for entry in gt.values():
        entry["labels"] = np.asarray(entry["labels"], dtype=np.int64)
        entry["segments"] = np.asarray(entry["segments"], dtype=np.float64).reshape(-1, 2)
    ambiguous = {v: np.asarray(s, dtype=np.float64).reshape(-1, 2) for v, s in ambiguous.items()}
    det = None
    if detections is not None:
        det = {}
        ids = set(index.values())
        for where, (vid, t1, t2, cid, score) in rows(detections, 5):
            cid = integer(cid, where)
            if cid not in ids:
                raise ValueError(f"{where}: class id {cid} is not in detclasslist.txt")
            vid = re.sub(r"\.(mp4|mpeg)$", "", vid)
            entry = det.setdefault(vid, {"labels": [], "segments": [], "scores": []})
            entry["labels"].append(cid)
            entry["segments"].append([_number(t1, f"{where}, start"), _number(t2, f"{where}, end")])
            entry["scores"].append(_number(score, f"{where}, score"))
        for entry in det.values():
            entry["labels"] = np.asarray(entry["labels"], dtype=np.int64)
            entry["segments"] = np.asarray(entry["segments"], dtype=np.float64).reshape(-1, 2)
            entry["scores"] = np.asarray(entry["scores"], dtype=np.float64)
    return gt, det, index, ambiguous
