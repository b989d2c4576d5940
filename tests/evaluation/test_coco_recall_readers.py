"""coco_evaluate against pycocotools itself; proposal recall by hand; readers
on fabricated fixtures."""

import contextlib
import io
import json
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from scalekit.evaluation import (
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
from scalekit.evaluation.coco import STAT_NAMES


def _fabricated(seed=0, images=12, classes=4):
    rng = np.random.default_rng(seed)
    gt = {"images": [], "annotations": [], "categories": [{"id": c + 1, "name": f"c{c}"} for c in range(classes)]}
    preds = {}
    for i in range(1, images + 1):
        gt["images"].append({"id": i, "width": 640, "height": 480})
        boxes, scores, labels = [], [], []
        for _ in range(rng.integers(1, 8)):
            w, h = rng.uniform(8, 300, 2)
            x, y = rng.uniform(0, 640 - w), rng.uniform(0, 480 - h)
            c = int(rng.integers(1, classes + 1))
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": i, "category_id": c,
                                      "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
            jitter = rng.normal(0, 0.08, 4) * [w, h, w, h]
            boxes.append([x + jitter[0], y + jitter[1], x + w + jitter[2], y + h + jitter[3]])
            scores.append(rng.uniform(0.3, 1.0))
            labels.append(c if rng.random() > 0.15 else int(rng.integers(1, classes + 1)))
        for _ in range(3):  # false positives
            x, y = rng.uniform(0, 500), rng.uniform(0, 380)
            boxes.append([x, y, x + 60, y + 60])
            scores.append(rng.uniform(0, 0.6))
            labels.append(int(rng.integers(1, classes + 1)))
        preds[i] = {"boxes": torch.tensor(boxes), "scores": torch.tensor(scores), "labels": torch.tensor(labels)}
    return gt, preds


class TestCoco:
    def test_equals_pycocotools_summary(self, tmp_path):
        gt, preds = _fabricated()
        ours = coco_evaluate(preds, gt)
        # pycocotools by hand, from the files a user would write
        (tmp_path / "gt.json").write_text(json.dumps(gt))
        (tmp_path / "res.json").write_text(json.dumps(to_coco_results(preds)))
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(str(tmp_path / "gt.json"))
            ev = COCOeval(coco, coco.loadRes(str(tmp_path / "res.json")), "bbox")
            ev.evaluate(), ev.accumulate(), ev.summarize()
        for name, value in zip(STAT_NAMES, ev.stats):
            assert ours[name] == pytest.approx(value, abs=1e-12), name
        assert 0.2 < ours["AP"] < 0.95
        # COCO's AP is the mean of the per-class APs
        assert np.mean(list(ours["per_class"].values())) == pytest.approx(ours["AP"], abs=1e-12)
        # every input form gives the same numbers
        assert coco_evaluate(str(tmp_path / "res.json"), str(tmp_path / "gt.json"))["AP"] == ours["AP"]
        assert coco_evaluate(to_coco_results(preds), coco)["AP"] == ours["AP"]

    def test_perfect_and_empty(self):
        gt, _ = _fabricated(seed=1, images=3)
        perfect = {}
        for a in gt["annotations"]:
            x, y, w, h = a["bbox"]
            p = perfect.setdefault(a["image_id"], {"boxes": [], "scores": [], "labels": []})
            p["boxes"].append([x, y, x + w, y + h]), p["scores"].append(1.0), p["labels"].append(a["category_id"])
        assert coco_evaluate(perfect, gt)["AP50"] == pytest.approx(1.0)
        assert coco_evaluate({}, gt)["AP"] == 0.0

    def test_bad_input(self, tmp_path):
        gt, preds = _fabricated(images=2)
        with pytest.raises(ValueError, match="image_id 99 is not in the ground truth"):
            coco_evaluate({99: preds[1]}, gt)
        with pytest.raises(FileNotFoundError, match="no such annotation file"):
            coco_evaluate(preds, str(tmp_path / "missing.json"))
        with pytest.raises(ValueError, match=r"predictions\[1\]: boxes \[N, 4\], scores \[N\] and labels \[N\] must agree"):
            coco_evaluate({1: {**preds[1], "scores": preds[1]["scores"][:1]}}, gt)


class TestProposalRecall:
    def test_hand_worked(self):
        gt = [torch.tensor([[0.0, 0, 10, 10], [100, 100, 140, 140], [200, 0, 400, 200]])]  # sizes 10, 40, 200
        props = [torch.tensor([[0.0, 0, 10, 10], [100, 100, 140, 160], [0.0, 0, 10, 10]])]
        r = proposal_recall(props, gt)
        # IoUs one to one: 1.0, 1600/2400 = 0.667, none for the 200 px box
        assert r["AR50"] == pytest.approx(2 / 3)
        assert r["AR75"] == pytest.approx(1 / 3)
        assert r["recall_by_size"][(0, 25)] == 1.0 and r["recall_by_size"][(25, 50)] == 1.0
        assert r["recall_by_size"][(200, 300)] == 0.0 and np.isnan(r["recall_by_size"][(100, 200)])
        assert r["num_gt_by_size"][(200, 300)] == 1
        thresholds = np.arange(0.5, 0.951, 0.05)
        assert r["AR"] == pytest.approx(np.mean([(1 + (2 / 3 >= t)) / 3 for t in thresholds]))

    def test_one_to_one_and_top_k(self):
        gt = [torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 11]])]
        one = [torch.tensor([[0.0, 0, 10, 10]])]
        assert proposal_recall(one, gt)["AR50"] == 0.5  # one proposal covers one box only
        props = {"boxes": torch.tensor([[50.0, 50, 60, 60], [0, 0, 10, 10]]), "scores": torch.tensor([0.1, 0.9])}
        assert proposal_recall([props], [gt[0][:1]], top_k=1)["AR50"] == 1.0  # sorted by score first
        assert proposal_recall([torch.tensor([[50.0, 50, 60, 60], [0, 0, 10, 10]])], [gt[0][:1]], top_k=1)["AR50"] == 0.0

    def test_bad_input(self):
        with pytest.raises(ValueError, match="one entry per image"):
            proposal_recall([torch.zeros(1, 4)], [])


class TestReaders:
    def test_class_segments_json(self, tmp_path):
        path = tmp_path / "gt.json"
        path.write_text(json.dumps({"s1": {"cut": [[10, 40]], "peel": [[50, 80], [90, 95]]}, "s2": {"peel": [[0, 5]]}}))
        gt, ids = read_class_segments(str(path))
        assert ids == {"cut": 0, "peel": 1}
        assert gt["s1"]["labels"].tolist() == [0, 1, 1] and gt["s2"]["segments"].tolist() == [[0.0, 5.0]]
        with pytest.raises(ValueError, match="video 's1': unknown class 'cut'"):
            read_class_segments(str(path), classes=["peel"])

    def test_csv_with_scores_feeds_the_evaluators(self, tmp_path):
        (tmp_path / "gt.csv").write_text("video,start_frame,end_frame,class\nv1,0,10,a\nv1,20,30,b\n")
        (tmp_path / "det.csv").write_text("video,start_frame,end_frame,class,score\nv1,0,9,a,0.9\nv1,21,30,b,0.4\n")
        gt, ids = read_segments_csv(str(tmp_path / "gt.csv"))
        det, _ = read_segments_csv(str(tmp_path / "det.csv"), score="score", classes=ids)
        assert tiou_map(det, gt, thresholds=(0.5,))["mAP"] == 1.0
        with pytest.raises(ValueError, match="columns"):
            read_segments_csv(str(tmp_path / "gt.csv"), label="activity")

    def test_activitynet(self, tmp_path):
        gt_json = {"database": {
            "v1": {"subset": "validation", "annotations": [{"segment": [1.0, 5.0], "label": "Jump"}]},
            "v2": {"subset": "training", "annotations": [{"segment": [0.0, 2.0], "label": "Run"}]}}}
        res_json = {"results": {"v1": [{"segment": [1.0, 5.0], "label": "Jump", "score": 0.7}]}}
        (tmp_path / "gt.json").write_text(json.dumps(gt_json))
        gt, det, ids = read_activitynet(str(tmp_path / "gt.json"), res_json)
        assert list(gt) == ["v1"] and ids == {"Jump": 0}
        assert tiou_map(det, gt)["mAP"] == 1.0
        with pytest.raises(ValueError, match="'database'"):
            read_activitynet({"results": {}})


class TestFasterCocoEval:
    @pytest.mark.parametrize("seed, images, classes", [(0, 12, 4), (1, 60, 7), (2, 200, 20)])
    def test_equals_pycocotools(self, seed, images, classes):
        pytest.importorskip("faster_coco_eval")
        gt, preds = _fabricated(seed=seed, images=images, classes=classes)
        ref = coco_evaluate(preds, gt)
        fast = coco_evaluate(preds, gt, backend="faster_coco_eval")
        for k in STAT_NAMES:
            assert abs(fast[k] - ref[k]) <= 1e-12, k
        assert fast["per_class"].keys() == ref["per_class"].keys()
        for c in ref["per_class"]:
            assert abs(fast["per_class"][c] - ref["per_class"][c]) <= 1e-12, c

    def test_bad_backend(self):
        gt, preds = _fabricated()
        with pytest.raises(ValueError, match="backend must be one of"):
            coco_evaluate(preds, gt, backend="detectron2")


@pytest.fixture(params=["compiled", "numpy"], scope="class")
def reader_path(request):
    """Each reader test through both paths of read_results: the compiled scanner and the numpy passes."""
    from scalekit import _ext
    from scalekit.evaluation import _anet_results

    if request.param == "compiled" and not _ext.has_ops():
        pytest.skip("the compiled ops are not built")
    with pytest.MonkeyPatch.context() as m:
        m.setattr(_anet_results, "_use_op", lambda: request.param == "compiled")
        yield request.param


class TestHostileInputIssue27:
    """The reader and recall inputs of issue 27: each gives a clear error, none a silent answer."""

    def test_unknown_subset_lists_the_subsets(self):
        gt_json = {"database": {"v1": {"subset": "validation", "annotations": [{"segment": [0, 1], "label": "a"}]},
                                "v2": {"subset": "training", "annotations": []}}}
        with pytest.raises(ValueError, match=r"subset='valid': no video .* \['training', 'validation'\]"):
            read_activitynet(gt_json, subset="valid")

    def test_subset_without_annotations_and_empty_ground_truth_give_nan(self):
        gt_json = {"database": {"v1": {"subset": "testing", "annotations": []}}}
        with pytest.warns(UserWarning, match="subset 'testing' have no annotations"):
            gt, _, ids = read_activitynet(gt_json, subset="testing")
        det = {"v1": {"labels": [0], "segments": [[0.0, 1.0]], "scores": [0.5]}}
        with pytest.warns(RuntimeWarning, match="tiou_map: the ground truth has no segment"):
            r = tiou_map(det, gt)
        assert np.isnan(r["mAP"]) and np.isnan(r["mAP_per_threshold"]).all()
        with pytest.warns(RuntimeWarning, match="midpoint_map: the ground truth has no segment"):
            assert np.isnan(midpoint_map({}, gt)["mAP"])

    def test_class_segments_rows_are_pairs(self):
        with pytest.raises(ValueError, match=r"source\['v'\]\['cut'\], row 0: a segment must be \[start, end\]"):
            read_class_segments({"v": {"cut": [[10, 40, 50, 60]]}})
        with pytest.raises(ValueError, match=r"row 1: a segment must be"):
            read_class_segments({"v": {"cut": [[10, 40], [50]]}})
        with pytest.raises(ValueError, match=r"source\['v'\] must map classes"):
            read_class_segments({"v": [[10, 40]]})

    def test_csv_errors_name_file_and_line(self, tmp_path):
        path = tmp_path / "gt.csv"
        path.write_text("video,start_frame,end_frame,class\nv1,0,10,a\nv1,2O,30,b\n")
        with pytest.raises(ValueError, match=r"gt.csv:3, column 'start_frame': '2O' is not a number"):
            read_segments_csv(str(path))
        path.write_text("video,start_frame,end_frame,class\nv1,0,10,a\n\nv1,20,30\n")
        with pytest.raises(ValueError, match=r"gt.csv:4: 4 fields expected"):
            read_segments_csv(str(path))
        path.write_text("video,start,end_frame,class\nv1,0,10,a\n")
        with pytest.raises(ValueError, match=r"gt.csv:1: columns .* \(missing \['start_frame'\]\)"):
            read_segments_csv(str(path))
        path.write_text("")
        with pytest.raises(ValueError, match="gt.csv: empty file"):
            read_segments_csv(str(path))

    def test_thumos_errors_name_file_and_line(self, tmp_path):
        (tmp_path / "detclasslist.txt").write_text("7 BaseballPitch\n")
        (tmp_path / "BaseballPitch_test.txt").write_text("v1 0 10\nv1 x 12\n")
        (tmp_path / "Ambiguous_test.txt").write_text("")
        with pytest.raises(ValueError, match=r"BaseballPitch_test.txt:2, start: 'x' is not a number"):
            read_thumos14(tmp_path)
        (tmp_path / "BaseballPitch_test.txt").write_text("v1 0 10\n")
        (tmp_path / "det.txt").write_text("v1 0 10 7 0.5\nv1 0 10 seven 0.5\n")
        with pytest.raises(ValueError, match=r"det.txt:2: class id 'seven' is not an integer"):
            read_thumos14(tmp_path, tmp_path / "det.txt")
        (tmp_path / "detclasslist.txt").write_text("x BaseballPitch\n")
        with pytest.raises(ValueError, match=r"detclasslist.txt:1: class id 'x'"):
            read_thumos14(tmp_path)

    @pytest.mark.parametrize("entry, match", [
        ({"label": "a", "score": 0.5}, r"\['v1'\]\[1\] must be a dict with 'segment', 'label' and 'score'"),
        ({"segment": [0, 1, 2], "label": "a", "score": 0.5}, r"\['v1'\]\[1\]\['segment'\]: a segment must be"),
        ({"segment": [0, 1], "label": "a", "score": "high"}, r"\['v1'\]\[1\]\['score'\] must be a number"),
        ({"segment": [0, 1], "label": ["a"], "score": 0.5}, r"\['v1'\]\[1\]\['label'\] must be a string"),
        ("x", r"\['v1'\]\[1\] must be a dict"),
    ])
    def test_activitynet_malformed_predictions_are_named(self, entry, match):
        gt_json = {"database": {"v1": {"subset": "validation", "annotations": [{"segment": [0, 1], "label": "a"}]}}}
        res = {"results": {"v1": [{"segment": [0, 1], "label": "a", "score": 0.9}, entry]}}
        with pytest.raises(ValueError, match=match):
            read_activitynet(gt_json, res)

    def test_activitynet_malformed_ground_truth_is_named(self, tmp_path):
        gt_json = {"database": {"v1": {"subset": "validation", "annotations": [{"label": "a"}]}}}
        with pytest.raises(ValueError, match=r"\['v1'\]\['annotations'\]\[0\] must be a dict with 'segment'"):
            read_activitynet(gt_json)
        (tmp_path / "gt.json").write_text('{"database": {"v1": {"subset": "validation",\n "annotations": [}}}')
        with pytest.raises(ValueError, match=r"gt.json:2:\d+: not valid JSON"):
            read_activitynet(str(tmp_path / "gt.json"))
        with pytest.raises(FileNotFoundError, match="results: no such result file"):
            read_activitynet({"database": {}}, str(tmp_path / "missing.json"), subset=None)

    @pytest.mark.usefixtures("reader_path")
    def test_activitynet_the_fast_and_the_standard_parser_agree(self, tmp_path, monkeypatch):
        from benchmarks.eval import activitynet_files
        from scalekit import _json

        gt_file, res_file, n = activitynet_files(str(tmp_path), videos=6, classes=5, per_video=40)
        with pytest.warns(UserWarning):
            fast = read_activitynet(gt_file, res_file)
        from scalekit.evaluation import readers

        with monkeypatch.context() as m:
            m.setattr(_json, "_orjson", None)  # the numpy reader, its numbers through json
            with pytest.warns(UserWarning):
                fast_json = read_activitynet(gt_file, res_file)
        monkeypatch.setattr(readers, "read_results", lambda data: None)  # the JSON parsers, not the numpy reader
        with pytest.warns(UserWarning):
            parsed = read_activitynet(gt_file, res_file)
        monkeypatch.setattr(_json, "_orjson", None)
        with pytest.warns(UserWarning):
            slow = read_activitynet(gt_file, res_file)
        assert fast_json[2] == slow[2]
        for v in slow[1]:
            for k in ("labels", "segments", "scores"):
                np.testing.assert_array_equal(fast_json[1][v][k], slow[1][v][k])
        for v in slow[1]:
            for k in ("labels", "segments", "scores"):
                np.testing.assert_array_equal(parsed[1][v][k], slow[1][v][k])
        assert fast[2] == slow[2] and list(fast[1]) == list(slow[1])
        for v in slow[1]:
            for k in ("labels", "segments", "scores"):
                np.testing.assert_array_equal(fast[1][v][k], slow[1][v][k])
        assert sum(len(d["labels"]) for d in slow[1].values()) == n
        # against a plain per-prediction loop over the JSON
        res = json.load(open(res_file))["results"]
        for v, preds in res.items():
            assert slow[1][v]["scores"].tolist() == [p["score"] for p in preds]
            assert slow[1][v]["labels"].tolist() == [slow[2][p["label"]] for p in preds]

    def test_proposal_recall_negative_top_k(self):
        gt = [torch.tensor([[0.0, 0, 10, 10]])]
        props = [torch.tensor([[50.0, 50, 60, 60], [0, 0, 10, 10]])]
        assert proposal_recall(props, gt, top_k=None)["AR"] == 1.0
        assert proposal_recall(props, gt, top_k=np.int64(2))["AR"] == 1.0
        assert proposal_recall(props, gt, top_k=0)["AR"] == 0.0
        with pytest.raises(ValueError, match="top_k must be >= 0"):
            proposal_recall(props, gt, top_k=-1)
        with pytest.raises(TypeError, match="top_k must be an int"):
            proposal_recall(props, gt, top_k=1.5)
        with pytest.raises(ValueError, match=r"gt_boxes\[0\] must have shape \[N, 4\]"):
            proposal_recall(props, [torch.zeros(2, 5)])
        with pytest.raises(ValueError, match="iou_thresholds must be"):
            proposal_recall(props, gt, iou_thresholds=[])


def _generic(res_json):
    from scalekit.evaluation.readers import _predictions

    return _predictions(res_json["results"])


def _both_number_parsers(data):
    """read_results(data) with orjson (where installed) and with the standard library's json."""
    from unittest import mock

    from scalekit import _json
    from scalekit.evaluation._anet_results import read_results

    out = [read_results(data)] if _json._orjson is not None else []
    with mock.patch.object(_json, "_orjson", None):
        out.append(read_results(data))
    return out


def _same_predictions(fast, generic):
    videos, counts, names, codes, segments, scores = fast
    g_videos, g_counts, g_names, g_codes, g_segments, g_scores = generic
    assert videos == g_videos and counts.tolist() == g_counts.tolist()
    assert [names[c] for c in codes] == [g_names[c] for c in g_codes]
    np.testing.assert_array_equal(segments, g_segments)
    np.testing.assert_array_equal(scores, g_scores)


@pytest.mark.usefixtures("reader_path")
class TestNumpyResultsReader:
    """The object-free reader of ActivityNet results (issue 27): the numbers of a JSON
    parser, or None so that the JSON parser reads the file."""

    def test_equals_a_json_parser_on_the_benchmark_files(self, tmp_path):
        from benchmarks.eval import activitynet_files
        from scalekit.evaluation._anet_results import read_results

        _, res_file, n = activitynet_files(str(tmp_path), videos=12, classes=7, per_video=30)
        data = open(res_file, "rb").read()
        fast = read_results(data)
        assert fast is not None and int(fast[1].sum()) == n
        _same_predictions(fast, _generic(json.loads(data)))

    @given(st.data())
    def test_equals_a_json_parser_or_declines(self, data):
        number = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=False, allow_infinity=False, width=64))
        pred = st.fixed_dictionaries({"segment": st.lists(number, min_size=2, max_size=2),
                                      "label": st.text(max_size=20), "score": number})
        results = data.draw(st.dictionaries(st.text(max_size=5), st.lists(pred, max_size=4), max_size=4))
        doc = {"version": "1.3", "results": results, "external_data": {"used": True, "n": None}}
        text = json.dumps(doc, indent=data.draw(st.sampled_from([None, 1])), ensure_ascii=data.draw(st.booleans()),
                          separators=data.draw(st.sampled_from([None, (",", ":")])))
        for fast in _both_number_parsers(text.encode("utf-8")):
            if fast is not None:
                _same_predictions(fast, _generic(json.loads(text)))

    @pytest.mark.parametrize("dump", [
        {}, {"indent": 2}, {"separators": (",", ":")}, {"ensure_ascii": False}, {"indent": "\t"}])
    @pytest.mark.parametrize("keys", [("segment", "label", "score"), ("score", "label", "segment"),
                                      ("label", "segment", "score")])
    def test_plain_files_take_the_fast_path_with_either_parser(self, dump, keys):
        rng = np.random.default_rng(len(keys[0]) + len(dump))
        # labels of 0 to 20 bytes (1, 2 and 3 machine words), non-ASCII ones, numbers of every JSON form
        labels = ["", "a", "Long jump", "12345678", "123456789", "ab" * 10, "x y,z:[]{}"]
        raw = dump.get("ensure_ascii") is False  # else json writes \u escapes, which the fast path leaves to json
        labels += ["Café", "食べる"] if raw else []
        numbers = [0, -0.0, 1, -3, 1e-300, 123.45678901234567, 2.5e17, 1e22, -1.7976931348623157e308,
                   5e-324, 0.1 + 0.2, 9007199254740993, 1 / 3]
        results = {}
        for v in range(5):
            results[f"v{v}" if v != 3 or not raw else "vidéo 3"] = [
                {k: {"segment": [float(rng.choice(numbers)), rng.choice(numbers)],
                     "label": labels[int(rng.integers(len(labels)))], "score": rng.choice(numbers)}[k] for k in keys}
                for _ in range(int(rng.integers(0, 6)))]
        results["v9"] = [{k: {"segment": [1, 2], "label": "z", "score": 0.5}[k] for k in keys}]  # the file's end
        text = json.dumps({"results": results}, **dump)
        for fast in _both_number_parsers(text.encode("utf-8")):
            assert fast is not None
            _same_predictions(fast, _generic(json.loads(text)))

    @pytest.mark.parametrize("text", [
        '{"results": {"v": [{"segment": [0, 1], "label": "a", "score": 1}, 7{"segment": [0, 1], "label": "a", "score": 1}]}}',
        '{"results": {"v": [{"segment": [0, 1 2], "label": "a", "score": 1}]}}',
        '{"results": {"v": [{"segment": [0, 1], "label": "a", "score": 1} 5]}}',
        '{"results": {"v": [], "w": [3]}}',
        '{"results": {"v": [{"segment": [0, 1], "label": "a", "score": 1}, {"segment": [0, 1], "label": "a", "scorf": 1}]}}',
        '{"results": {"v": [{"segment": [0, 1], "label": "a", "score": 1}, {"segment": [0, 1], "labek": "a", "score": 1}]}}',
        '{"results": {"v": [{"segment": [0, 1], "label": "a", "score": +1}]}}',
        '{"results": {"v": [{"segment": [0, 01], "label": "a", "score": 1}]}}',
        '{"results": {"v": [{"segment": [0, 1.], "label": "a", "score": 1}]}}',
        '{"results": {"v": [{"segment": [0, 1], "label": "a", "score": true}]}}',
        '{"results": {"v": [{"segment": [0, 1], "label": "a\x01", "score": 1}]}}',
        '{"results": {"v": [{"segment": [0, 1], "label": "a\tb", "score": 1}]}}',
        '{"results": {"v\n": [{"segment": [0, 1], "label": "a", "score": 1}]}}',
        '{"results": {"v": [{"segment": [0, 1], "label": "a", "score": 1}]}} 4',
        '7 {"results": {"v": [{"segment": [0, 1], "label": "a", "score": 1}]}}',
    ])
    def test_declines_numbers_and_bytes_out_of_place(self, text):
        data = text.encode()
        assert all(fast is None for fast in _both_number_parsers(data))
        try:
            expected = json.loads(text)
        except ValueError:
            return
        try:  # the JSON parser's reading is the answer: the predictions, or an error naming the entry
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _, det, _ = read_activitynet({"database": {"x": {"subset": "validation", "annotations": []}}}, expected)
        except ValueError as e:
            assert "results['results']" in str(e)
            return
        assert sum(len(d["scores"]) for d in det.values()) == sum(len(p) for p in expected["results"].values())

    @pytest.mark.parametrize("orjson", [True, False])
    def test_parse_json_restores_the_collector(self, orjson):
        import gc
        from unittest import mock

        from scalekit import _json

        with mock.patch.object(_json, "_orjson", _json._orjson if orjson else None):
            for enabled in (True, False):
                gc.enable() if enabled else gc.disable()
                try:
                    assert _json.parse_json(b'{"a": [1, {"b": 2}]}') == {"a": [1, {"b": 2}]}
                    assert gc.isenabled() == enabled
                    with pytest.raises(ValueError, match="x.json:1:"):
                        _json.parse_json(b'{"a": [1,', "x.json")
                    assert gc.isenabled() == enabled
                finally:
                    gc.enable()

    def test_windows_past_the_end_of_the_bytes(self):
        from scalekit.evaluation._anet_results import _windows

        a = np.frombuffer(b"abcdefghij", dtype=np.uint8)
        got = _windows(a, np.array([0, 5, 8, 9, -2]), 4)
        assert [bytes(r) for r in got] == [b"abcd", b"fghi", b"ij\0\0", b"j\0\0\0", b"\0\0ab"]

    @pytest.mark.parametrize("text", [
        '{"results": {"v": [{"segment": [0, 1], "label": "a", "score": 1}, {"label": "a", "segment": [0, 1], "score": 1}]}}',
        '{"results": {"v": [{"segment": [0, 1], "label": "a", "score": 1, "extra": 2}]}}',
        '{"results": {"v": [{"segment": [0, 1], "label": "a\\u00e9", "score": 1}]}}',
        '{"results": {"v": [{"segment": [0, 1], "label": "a", "score": 1}], "v": []}}',
        '{"results": {"v": [{"segment": [0, 1], "label": "a", "score": tru}]}}',
        '{"results": {"v": [{"segment": [0, 1], "label": "a", "score": 1}]}, "x": [1,}',
        '{"results": {"v": [{"segment": [0, 1, 2], "label": "a", "score": 1}]}}',
        '{"results": {"v": [{"segment": [0, 1], "label": "a", "score": 1e999}]}}',
        '{"results": {"v": [{"segment": [0, 1], "label": 3, "score": 1}]}}',
    ])
    def test_declines_what_is_not_the_plain_shape(self, text):
        from scalekit.evaluation._anet_results import read_results

        assert read_results(text.encode()) is None

    def test_a_declined_file_still_reads_or_fails_clearly(self, tmp_path):
        gt = {"database": {"v": {"subset": "validation", "annotations": [{"segment": [0, 1], "label": "a"}]}}}
        path = tmp_path / "res.json"
        path.write_text('{"results": {"v": [{"segment": [0, 1], "label": "a", "score": 1},\n'
                        '{"label": "a", "segment": [0, 2], "score": 0.5}]}}')
        _, det, _ = read_activitynet(gt, str(path))
        assert det["v"]["segments"].tolist() == [[0.0, 1.0], [0.0, 2.0]]
        path.write_text('{"results": {"v": [{"segment": [0, 1], "label": "a", "score": 1},\n{"segment": [0, 1]]}}')
        with pytest.raises(ValueError, match=r"res.json:2:\d+: not valid JSON"):
            read_activitynet(gt, str(path))


class TestCocoMistakes:
    """Issue 21, item 2: the two silent AP-0 mistakes are named."""

    def test_contiguous_labels_instead_of_category_ids_raise(self):
        gt, preds = _fabricated(images=4, classes=3)
        to_id = {1: 10, 2: 20, 3: 90}  # the dataset's own, non-contiguous ids
        for c in gt["categories"]:
            c["id"] = to_id[c["id"]]
        for a in gt["annotations"]:
            a["category_id"] = to_id[a["category_id"]]
        with pytest.raises(ValueError, match=r"category ids \[1, 2, 3\] are not among .*to_coco_results\(predictions, "
                                             r"label_to_category\)"):
            coco_evaluate(preds, gt)
        mapped = to_coco_results(preds, to_id)
        assert coco_evaluate(mapped, gt)["AP"] > 0.2
        # a subset of the categories, on purpose: the others' predictions are left out, as pycocotools does
        sub = {**gt, "categories": [c for c in gt["categories"] if c["id"] != 90]}
        with pytest.raises(ValueError, match=r"category ids \[90\] .* unknown_categories='ignore'"):
            coco_evaluate(mapped, sub)
        assert coco_evaluate(mapped, sub, unknown_categories="ignore")["AP"] == coco_evaluate(
            [r for r in mapped if r["category_id"] != 90], sub)["AP"]

    def test_xywh_boxes_given_as_xyxy_warn(self):
        gt, _ = _fabricated(seed=3, images=6)
        preds = {}
        for a in gt["annotations"]:
            p = preds.setdefault(a["image_id"], {"boxes": [], "scores": [], "labels": []})
            p["boxes"].append(a["bbox"]), p["scores"].append(0.9), p["labels"].append(a["category_id"])
        with pytest.warns(UserWarning, match=r"have x2 < x1 or y2 < y1: .*box_convert"):
            coco_evaluate(preds, gt)

    def test_xyxy_results_given_as_xywh_warn(self):
        gt, preds = _fabricated(seed=4, images=6)
        results = to_coco_results(preds)
        for r in results:  # the user's own dicts, with xyxy where COCO wants xywh
            x, y, w, h = r["bbox"]
            r["bbox"] = [x, y, x + w, y + h]
        with pytest.warns(UserWarning, match=r"end more than 10% beyond their image: COCO results are \[x, y, width"):
            coco_evaluate(results, gt)

    @pytest.mark.parametrize("seed", range(4))
    def test_correct_predictions_give_no_warning(self, seed):
        gt, preds = _fabricated(seed=seed, images=30, classes=5)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            coco_evaluate(preds, gt)
            coco_evaluate(to_coco_results(preds), gt)

    def test_malformed_ground_truth_and_results_are_named(self):
        gt, preds = _fabricated(images=2)
        del gt["annotations"][0]["bbox"]
        with pytest.raises(ValueError, match=r"coco_gt\['annotations'\]\[0\] has no \['bbox'\]"):
            coco_evaluate(preds, gt)
        gt, preds = _fabricated(images=2)
        with pytest.raises(ValueError, match=r"predictions\[0\] must be a COCO result dict"):
            coco_evaluate([{"image_id": 1, "bbox": [0, 0, 1, 1]}], gt)

    def test_progress(self, capsys):
        gt, preds = _fabricated(images=3)
        coco_evaluate(preds, gt)
        assert capsys.readouterr().err == ""
        coco_evaluate(preds, gt, progress=True)
        assert "coco_evaluate [####################] 4/4" in capsys.readouterr().err
        g = {"v": {"labels": [0, 1], "segments": [[0.0, 1.0], [2.0, 3.0]]}}
        tiou_map({}, g, progress=True)
        assert "tiou_map [####################] 2/2" in capsys.readouterr().err
        midpoint_map({}, g, progress=True)
        assert "midpoint_map [####################] 2/2" in capsys.readouterr().err
