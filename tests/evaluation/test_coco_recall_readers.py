"""coco_evaluate against pycocotools itself; proposal recall by hand; readers
on fabricated fixtures."""

import contextlib
import io
import json

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from scalekit.evaluation import (
    coco_evaluate,
    proposal_recall,
    read_activitynet,
    read_class_segments,
    read_segments_csv,
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
