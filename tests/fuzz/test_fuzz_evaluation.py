"""Fuzz: every public function of scalekit.evaluation on hostile input (issue 27).

Each example gives a result that meets the function's contract (a property is
checked) or a ValueError/TypeError naming the argument at fault, within its
time bound. Readers get malformed files: truncated, with garbage bytes, with
fields missing, with numbers that are not numbers. (``clips_from_scores`` moves
to ``scalekit.sequence`` and is fuzzed there.)
"""

import json
import math
import os
import tempfile
import warnings

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st

from scalekit.evaluation import (
    average_precision,
    clips_to_detections,
    coco_evaluate,
    midpoint_map,
    proposal_recall,
    read_activitynet,
    read_class_segments,
    read_segments_csv,
    read_thumos14,
    tiou_map,
    to_coco_results,
)
from tests.fuzz.hostile import (HOSTILE_FLOATS, boxes, covers, expect_clear, hostile_floats, hostile_ints,
                                hostile_numbers, scores_like, segments, time_bound)

BOUND = 2.0  # seconds per call: every input here is small


def _quiet(fn, *args, names, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NaN mAP over empty ground truth, box-format hints
        with time_bound(BOUND):
            return expect_clear(fn, *args, names=names, **kwargs)


@st.composite
def _side(draw, with_scores: bool, videos=("a", "b")):
    out = {}
    for v in draw(st.lists(st.sampled_from(videos), unique=True, max_size=len(videos))):
        seg = draw(segments(max_segments=5))
        n = seg.shape[0]
        labels = draw(st.one_of(st.lists(st.integers(-1, 2), min_size=n, max_size=n),
                                st.lists(st.integers(0, 2), min_size=n, max_size=n + 1)))
        entry = {"labels": torch.tensor(labels, dtype=torch.int64), "segments": seg}
        if draw(st.integers(0, 9)) == 0:
            entry["segments"] = seg.numpy().tolist()  # lists, not tensors
        if with_scores:
            entry["scores"] = draw(scores_like(n)) if draw(st.integers(0, 9)) else torch.rand(n + 1)
        if draw(st.integers(0, 19)) == 0:
            entry.pop(draw(st.sampled_from(sorted(entry))))
        out[v] = entry
    return out


def _check_map(r, n_thresholds=None):
    assert math.isnan(r["mAP"]) or 0.0 <= r["mAP"] <= 1.0
    for ap in r["per_class"].values():
        ap = np.atleast_1d(ap)
        assert ((ap >= 0) & (ap <= 1)).all()
        if n_thresholds is not None:
            assert ap.shape == (n_thresholds,)


@covers(tiou_map)
@given(det=_side(True, ("a", "b", "c")), gt=_side(False), protocol=st.sampled_from(["activitynet", "thumos14"]),
       thresholds=st.one_of(st.none(), st.lists(hostile_floats(), min_size=0, max_size=3)),
       negative_starts=st.sampled_from(["raise", "clip", "keep", "drop"]),
       ambiguous=st.one_of(st.none(), st.builds(lambda s: {"a": s}, segments(max_segments=2))))
def test_tiou_map(det, gt, protocol, thresholds, negative_starts, ambiguous):
    if protocol != "thumos14":
        ambiguous = None
    r = _quiet(tiou_map, det, gt, protocol=protocol, thresholds=thresholds, negative_starts=negative_starts,
               ambiguous=ambiguous, names=("detections", "ground_truth", "thresholds", "negative_starts",
                                           "ambiguous"))
    if r is not None:
        _check_map(r, len(r["thresholds"]))


@covers(midpoint_map)
@given(det=_side(True), gt=_side(False), inclusive_end=st.booleans(),
       ap=st.sampled_from(["non_interpolated", "voc_all_point", "11_point", "11-point"]),
       classes=st.one_of(st.none(), st.just([0, 1]), st.just({"x": 0, "y": 1, "z": 2})))
def test_midpoint_map(det, gt, inclusive_end, ap, classes):
    r = _quiet(midpoint_map, det, gt, inclusive_end=inclusive_end, ap=ap, classes=classes,
               names=("detections", "ground_truth", "ap", "classes"))
    if r is not None:
        _check_map(r)
        for vid, _, d, g in r["matches"]:
            assert 0 <= d < len(det[vid]["labels"]) and 0 <= g < len(gt[vid]["labels"])


@covers(average_precision)
@given(tp=st.one_of(st.lists(st.booleans(), max_size=20), st.lists(hostile_floats(), max_size=4)),
       num_positives=st.one_of(st.integers(1, 4), hostile_numbers()), method=st.sampled_from(["non_interpolated", "voc_all_point", "11_point", "x"]))
def test_average_precision(tp, num_positives, method):
    ap = _quiet(average_precision, tp, num_positives, method, names=("tp", "num_positives", "ap"))
    if ap is not None:
        assert 0.0 <= ap <= 1.0


@covers(clips_to_detections)
@given(clips=st.dictionaries(st.one_of(st.integers(-2, 5), st.just("a")),
                             st.lists(st.one_of(st.tuples(hostile_floats(), hostile_floats(), hostile_floats()),
                                                st.tuples(hostile_floats()), st.just("x")), max_size=3),
                             max_size=3))
def test_clips_to_detections(clips):
    d = _quiet(clips_to_detections, clips, names=("clips",))
    if d is not None:
        n = sum(len(v) for v in clips.values())
        assert d["labels"].shape == (n,) and d["segments"].shape == (n, 2) and d["scores"].shape == (n,)


@covers(proposal_recall)
@given(props=st.lists(boxes(), min_size=1, max_size=2), gts=st.lists(boxes(), min_size=1, max_size=2),
       top_k=st.one_of(st.none(), hostile_ints(), st.just(1.5)))
def test_proposal_recall(props, gts, top_k):
    r = _quiet(proposal_recall, props, gts, top_k=top_k, names=("proposals", "gt_boxes", "top_k"))
    if r is not None:
        assert 0.0 <= r["AR"] <= 1.0 and r["num_gt"] == sum(v for v in r["num_gt_by_size"].values()) or True
        assert all(0.0 <= x <= 1.0 for x in r["recall"])


_GT = {"images": [{"id": 1, "width": 200, "height": 200}, {"id": 2, "width": 100, "height": 80}],
       "categories": [{"id": 3, "name": "a"}, {"id": 7, "name": "b"}],
       "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [10, 10, 50, 40], "area": 2000,
                        "iscrowd": 0},
                       {"id": 2, "image_id": 2, "category_id": 7, "bbox": [0, 0, 30, 30], "area": 900,
                        "iscrowd": 0}]}


@st.composite
def _coco_predictions(draw):
    out = {}
    for image_id in draw(st.lists(st.sampled_from([1, 2, 5]), unique=True, max_size=2)):
        b = draw(boxes(max_boxes=4))
        n = b.shape[0] if b.ndim == 2 else 1
        labels = draw(st.lists(st.sampled_from([3, 7, 1]), min_size=n, max_size=n))
        out[image_id] = {"boxes": b, "scores": draw(scores_like(n)), "labels": torch.tensor(labels)}
    return out


@covers(coco_evaluate, to_coco_results)
@given(preds=_coco_predictions(), as_list=st.booleans(), mapping=st.sampled_from([None, {3: 3, 7: 7}, {3: 3}]))
def test_coco_evaluate_and_to_coco_results(preds, as_list, mapping):
    results = _quiet(to_coco_results, preds, mapping, names=("predictions", "label_to_category"))
    if results is None:
        return
    assert len(results) == sum(len(p["scores"]) for p in preds.values())
    r = _quiet(coco_evaluate, results if as_list else preds, _GT, names=("predictions", "coco_gt"))
    if r is not None:
        assert all(v == -1 or 0.0 <= v <= 1.0 for k, v in r.items() if k != "per_class")


# ----------------------------------------------------------------------------- readers on malformed files


def _mangle(draw, text: str) -> str:
    """A file as a careless or hostile producer writes it: truncated, garbage, swapped bytes."""
    how = draw(st.sampled_from(["keep", "truncate", "insert", "replace", "empty"]))
    if how == "keep" or not text:
        return text
    at = draw(st.integers(0, len(text) - 1))
    if how == "truncate":
        return text[:at]
    if how == "empty":
        return ""
    junk = draw(st.sampled_from(["x", ",", "\n", "\"", "NaN", "1e999", "-", "]", "{", "\x00", "é", "  ", "\t"]))
    return text[:at] + junk + text[at + (how == "replace"):]


@st.composite
def _anet_text(draw):
    names = ["Long jump", "Run"]
    database = {f"v{i}": {"subset": draw(st.sampled_from(["validation", "training"])),
                          "annotations": [{"segment": [draw(st.sampled_from([0.0, 1.5, -1.0])), 9.0],
                                           "label": draw(st.sampled_from(names))}
                                          for _ in range(draw(st.integers(0, 2)))]} for i in range(2)}
    results = {f"v{i}": [{"segment": [draw(st.sampled_from([0.0, 2.0, 5.0])), draw(st.sampled_from([3.0, 8.0]))],
                          "label": draw(st.sampled_from(names + ["Swim"])), "score": draw(st.floats(0, 1))}
                         for _ in range(draw(st.integers(0, 3)))] for i in range(3)}
    return (_mangle(draw, json.dumps({"database": database})),
            _mangle(draw, json.dumps({"version": "1.3", "results": results, "external_data": {"used": True}})))


@covers(read_activitynet)
@given(texts=_anet_text(), subset=st.sampled_from(["validation", "valid", None]),
       classes=st.sampled_from([None, ["Long jump", "Run", "Swim"], ["Run"]]))
def test_read_activitynet_files(texts, subset, classes):
    with tempfile.TemporaryDirectory() as d:
        gt_file, res_file = os.path.join(d, "gt.json"), os.path.join(d, "res.json")
        for path, text in ((gt_file, texts[0]), (res_file, texts[1])):
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        out = _quiet(read_activitynet, gt_file, res_file, subset=subset, classes=classes,
                     names=("gt.json", "res.json", "ground_truth", "results", "subset", "classes"))
    if out is not None:
        gt, det, ids = out
        for side in (gt, det):
            for entry in side.values():
                assert entry["segments"].shape == (entry["labels"].shape[0], 2)
                assert set(entry["labels"].tolist()) <= set(ids.values())


@covers(read_class_segments)
@given(data=st.dictionaries(st.sampled_from(["v1", "v2"]), st.one_of(
    st.dictionaries(st.sampled_from(["cut", "peel"]), st.one_of(
        st.lists(st.lists(st.sampled_from(HOSTILE_FLOATS[:6] + (3.0, 10.0)), min_size=0, max_size=5), max_size=3),
        st.just("10-40"), st.just([10, 40]))),
    st.just([[0, 1]])), max_size=2),
       classes=st.sampled_from([None, ["cut"], {"cut": 4, "peel": 9}]))
def test_read_class_segments(data, classes):
    out = _quiet(read_class_segments, data, classes, names=("source", "classes", "v1", "v2"))
    if out is not None:
        gt, ids = out
        for v, entry in gt.items():
            assert entry["segments"].shape == (sum(len(x) for x in data[v].values()), 2)


@covers(read_segments_csv)
@given(rows=st.lists(st.tuples(st.sampled_from(["v1", "v2"]), st.sampled_from(["0", "10", "2O", "", "nan", "1e999"]),
                               st.sampled_from(["5", "40", "x"]), st.sampled_from(["a", "3"]),
                               st.sampled_from(["0.5", "hi", ""])), max_size=4),
       header=st.sampled_from(["video,start_frame,end_frame,class,score", "video,start,end_frame,class,score", ""]),
       score=st.sampled_from([None, "score"]), data=st.data())
def test_read_segments_csv(rows, header, score, data):
    text = _mangle(data.draw, "\n".join([header] + [",".join(r) for r in rows]) + "\n")
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "gt.csv")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        out = _quiet(read_segments_csv, path, score=score, names=("gt.csv", "path"))
    if out is not None:
        for entry in out[0].values():
            assert entry["segments"].shape == (entry["labels"].shape[0], 2)


@covers(read_thumos14)
@given(data=st.data())
def test_read_thumos14_files(data):
    files = {"detclasslist.txt": "7 BaseballPitch\n12 Billiards\n",
             "BaseballPitch_test.txt": "video_test_1 10.0 20.0\nvideo_test_2 1 3\n",
             "Billiards_test.txt": "video_test_1 30 40\n",
             "Ambiguous_test.txt": "video_test_1 0 5\n",
             "det.txt": "video_test_1.mp4 11.0 19.0 7 0.9\nvideo_test_2 0 2 12 0.4\n"}
    victim = data.draw(st.sampled_from(sorted(files)))
    files[victim] = _mangle(data.draw, files[victim])
    with tempfile.TemporaryDirectory() as d:
        for name, text in files.items():
            with open(os.path.join(d, name), "w", encoding="utf-8") as f:
                f.write(text)
        out = _quiet(read_thumos14, d, os.path.join(d, "det.txt"), names=tuple(files) + ("annotation_dir",),
                     errors=(ValueError, TypeError, FileNotFoundError))
    if out is not None:
        gt, det, ids, amb = out
        assert set(ids.values()) <= {7, 12} and all(s.shape[1] == 2 for s in amb.values())
        for entry in det.values():
            assert set(entry["labels"].tolist()) <= set(ids.values())
