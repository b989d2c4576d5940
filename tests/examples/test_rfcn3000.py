"""examples/rfcn3000: the R-FCN-3000 pipeline end to end on tiny data (super-classes,
training, inference with NMS groups, objectness and COCO evaluation, add_class, resume),
its command line and its reproduction table. The blocks it calls are tested in
tests/heads and tests/detection."""

import json
import os
import sys

import numpy as np
import pytest

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "rfcn3000")
sys.path.insert(0, os.path.join(EXAMPLE, ".."))
import common  # noqa: E402

# unique module names: examples/snip/, sniper/ and msb_rnn/ have a train.py or reproduce.py too
train = common.import_script(os.path.join(EXAMPLE, "train.py"), "rfcn3000_train")
reproduce = common.import_script(os.path.join(EXAMPLE, "reproduce.py"), "rfcn3000_reproduce")
stats = common.import_script(os.path.join(EXAMPLE, "rfcn3000_stats.py"), "rfcn3000_stats")

TINY = ["--families", "3", "--classes-per-family", "4", "--held-out-per-family", "1", "--synthetic", "12", "6",
        "--per-class", "3", "--image-size", "96", "--cls-epochs", "1", "--max-steps", "2", "--batch-size", "2",
        "--proposals", "50", "--width", "16", "--pool-size", "3"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("rfcn3000_data"))


def test_pipeline_end_to_end_then_resume(tmp_path, data_dir, capsys):
    out = str(tmp_path / "run")
    cache = ["--classifier-cache", data_dir]  # the resumed run reuses the classification network
    first = train.main(["--out", out, "--synthetic-dir", data_dir, "--epochs", "1", "--superclasses", "2",
                        "--nms-compare", *cache, *TINY])
    printed = capsys.readouterr().out
    # super-classes: K-means ran on the classifier's class features and its recovery of the families is reported
    assert "recovers the families with purity" in printed
    sc = first["superclasses"]
    assert sc["k"] == 2 and sc["families"] == 3 and 1 / 3 <= sc["recovery_purity"] <= 1
    # COCO evaluation of the 9 known classes, with objectness AP on all and on held-out objects
    known = first["known"]
    assert set(known["coco"]) >= {"AP", "AP50", "APs", "per_class"}
    assert len(known["coco"]["per_class"]) == first["num_known"] == 9
    assert {"objectness_all", "objectness_held_out"} <= set(known)
    assert known["images_per_s"] > 0 and known["head_ms_per_image"] > 0
    # add_class: the 3 held-out classes (the last of each family) are added without a box and get an AP
    assert first["added"] == [4, 8, 12]
    per_class = first["all"]["coco"]["per_class"]
    assert len(per_class) == 12 and all(per_class[c] >= 0 for c in (4, 8, 12))
    assert set(first["held_out_per_class_AP"]) == {"4", "8", "12"}
    assert json.load(open(os.path.join(out, "results.json")))["added"] == [4, 8, 12]
    assert os.path.getsize(os.path.join(out, "loss.png")) > 0
    # Table 4.4: the same detector with three NMS groupings; per class is the evaluation above
    nms = first["nms_groups"]
    assert set(nms) == {"class", "superclass", "agnostic"} and nms["class"]["AP"] == known["coco"]["AP"]
    dets = np.load(os.path.join(out, "detections.npz"))  # the detections the bootstrap re-evaluates
    assert set(dets) == {"known", "objectness", "nms_class", "nms_superclass", "nms_agnostic", "all"}
    assert np.array_equal(dets["known"], dets["nms_class"])
    for image in np.unique(dets["nms_class"][:, 0]):  # one group suppresses at least as much as several
        rows = {k: dets[k][dets[k][:, 0] == image] for k in ("nms_class", "nms_superclass", "nms_agnostic")}
        assert len(rows["nms_agnostic"]) <= len(rows["nms_superclass"]) <= len(rows["nms_class"])
    # resume: epoch 2 continues from the checkpoint, its steps numbered after epoch 1's
    second = train.main(["--out", out, "--synthetic-dir", data_dir, "--epochs", "2", "--superclasses", "2",
                         "--resume", "--no-add-classes", *cache, *TINY])
    assert "resumed from" in capsys.readouterr().out
    rows = [json.loads(line) for line in open(os.path.join(out, "log.jsonl"))]
    assert [r["epoch"] for r in rows] == [0, 1] and [r["iter"] for r in rows] == [2, 4]
    assert "added" not in second and second["train_seconds"] >= first["train_seconds"]


def test_class_specific_head_and_deformable_variant_train_and_evaluate(tmp_path, data_dir):
    r = train.main(["--out", str(tmp_path / "rfcn"), "--synthetic-dir", data_dir, "--epochs", "1",
                    "--head", "rfcn", "--deformable", *TINY])
    assert len(r["known"]["coco"]["per_class"]) == 9 and "added" not in r  # no add_class for R-FCN
    assert {"objectness_all", "objectness_held_out"} <= set(r["known"])  # objectness of an R-FCN head too


def test_fewer_training_classes_keep_the_others_out_of_the_training_images(tmp_path, data_dir):
    r = train.main(["--out", str(tmp_path / "few"), "--synthetic-dir", data_dir, "--train-classes", "3",
                    "--epochs", "1", "--no-add-classes", "--nms-groups", "agnostic", *TINY])
    assert r["num_known"] == 3 and r["num_held_out"] == 3 and len(r["known"]["coco"]["per_class"]) == 3
    assert r["args"]["nms_groups"] == "agnostic"
    train_json = os.path.join(data_dir, "3x4", "train_12_c3", "annotations.json")
    drawn = {a["category_id"] for a in json.load(open(train_json))["annotations"]}
    assert drawn == set(r["known"]["coco"]["per_class"])  # only the 3 classes trained with boxes are drawn


def test_objectness_trained_with_the_held_out_classes(tmp_path, data_dir):
    # Table 4.7's OB: the held-out classes get boxes in training, and their objectness AP is still measured
    r = train.main(["--out", str(tmp_path / "ob"), "--synthetic-dir", data_dir, "--box-held-out", "--epochs", "1",
                    *TINY])
    assert r["num_known"] == 12 and r["held_out"] == [4, 8, 12] and "added" not in r
    assert "objectness_held_out" in r["known"]
    drawn = {a["category_id"] for a in json.load(open(os.path.join(data_dir, "3x4", "train_12_c12",
                                                                  "annotations.json")))["annotations"]}
    assert drawn & {4, 8, 12}  # held-out classes are drawn with boxes


def _watch_backbone(monkeypatch):
    """Record what reaches the backbone of the model train.py builds: (training?, batch shape, RPN model)."""
    seen = {"inputs": []}
    build = train.build_model

    def watched(*a, **k):
        model = build(*a, **k)
        seen["model"] = model
        model.backbone.register_forward_hook(
            lambda m, i, o: seen["inputs"].append((m.training, tuple(i[0].shape[-2:]))))
        return model
    monkeypatch.setattr(train, "build_model", watched)
    return seen


def test_table_4_2_setting_trains_on_classification_images_at_their_size_and_tests_on_detection_images(
        tmp_path, data_dir, monkeypatch):
    seen = _watch_backbone(monkeypatch)
    r = train.main(["--out", str(tmp_path / "cls"), "--synthetic-dir", data_dir, "--train-on", "classification",
                    "--epochs", "1", "--no-add-classes", *TINY])
    trained = {hw for t, hw in seen["inputs"] if t}
    tested = {hw for t, hw in seen["inputs"] if not t}
    assert trained == {(64, 64)}  # 40 px crops (padded to a multiple of 32), not resized to 96
    assert tested == {(96, 96)}  # the detection images, as the detector's transform sizes them
    detection = json.load(open(os.path.join(data_dir, "3x4", "cls_3", "detection.json")))
    assert len(detection["annotations"]) == len(detection["images"]) == 12 * 3  # one box per classification image
    assert r["args"]["train_on"] == "classification" and len(r["known"]["coco"]["per_class"]) == 9


def test_table_4_5_rpn_scores_as_objectness_and_the_rpn_overlap_rule(tmp_path, data_dir, monkeypatch):
    seen = _watch_backbone(monkeypatch)
    r = train.main(["--out", str(tmp_path / "rpn"), "--synthetic-dir", data_dir, "--rpn-iou", "0.5", "0.4",
                    "--rpn-objectness", "--epochs", "1", "--no-add-classes", *TINY])
    matcher = seen["model"].rpn.proposal_matcher
    assert (matcher.high_threshold, matcher.low_threshold) == (0.5, 0.4)
    assert set(r["rpn_objectness"]) == {"rpn", "rpn_bbr"}
    dets = np.load(os.path.join(tmp_path, "rpn", "detections.npz"))
    assert {"rpn", "rpn_bbr"} <= set(dets)
    for a, b in (("rpn", "known"), ("rpn", "rpn_bbr")):  # other scores, other boxes
        assert dets[a].shape != dets[b].shape or not np.allclose(dets[a], dets[b])


@pytest.mark.parametrize("argv, message", [(["--data", "/no/such/folder"], "--data: no such folder"),
                                           (["--epochs", "0"], "--epochs must be >= 1"),
                                           (["--held-out-per-family", "42"], "--held-out-per-family"),
                                           (["--rpn-iou", "0.3", "0.5"], "--rpn-iou needs 0 < BG <= FG < 1")])
def test_bad_arguments_exit_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        train.parse_args(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_unknown_held_out_category_is_named(tmp_path, data_dir, capsys):
    # a COCO-format folder: the synthetic train/val splits under DIR/{train,val}
    import shutil

    root = tmp_path / "coco"
    base = os.path.join(data_dir, "3x4")
    for split, folder in (("train", "train_12_c9"), ("val", "val_6")):
        if not os.path.isdir(os.path.join(base, folder)):
            pytest.skip("needs the data of the end-to-end test")
        shutil.copytree(os.path.join(base, folder), root / split)
    with pytest.raises(SystemExit):
        train.main(["--out", str(tmp_path / "o"), "--data", str(root), "--held-out", "99", *TINY])
    assert "--held-out: category ids [99]" in capsys.readouterr().err


def test_reproduce_summary_and_tables():
    def run(name, seed, ap, held=None):
        r = {"run": name, "seed": seed, "num_known": 200, "train_seconds": 10.0, "args": {"epochs": 3},
             "superclasses": {"recovery_ari": 0.5, "recovery_purity": 0.6, "classifier_train_accuracy": 0.3},
             "known": {"coco": {"AP": ap, "AP50": 2 * ap}, "objectness_all": {"AP": 0.3},
                       "objectness_held_out": {"AP": 0.2, "AP50": 0.4}, "images_per_s": 10.0, "head_ms_per_image": 3.0}}
        if held is not None:
            r.update(held_out_AP=held, all={"coco": {"AP": ap}}, added=[4])
        return r

    s = reproduce.summarise([run("K1", 0, 0.2, 0.1), run("K1", 1, 0.4, 0.3), run("rfcn_c20", 0, 0.5)])
    assert s["K1"]["AP"]["mean"] == pytest.approx(0.3) and s["K1"]["AP"]["spread"] == pytest.approx(0.1)
    assert s["K1"]["held_out_AP"]["mean"] == pytest.approx(0.2) and "held_out_AP" not in s["rfcn_c20"]
    result = {"summary": s, "resamples": 100, "speed": [
        {"classes": 200, "head": "decoupled", "threads": 1, "images_per_s": 9.0, "head_forward_ms": 2.0,
         "postprocess_ms": 1.0, "parameters_M": 1.0}],
        "comparisons": {"K5 - K1": {"difference": 0.012, "low": 0.004, "high": 0.02, "holds": True, "bootstrap_mean": 0.01,
                                    "per_seed": [0.01, 0.014], "seeds_agree": True, "what": "Table 4.3",
                                    "objects": "known"}}}
    text = stats.page_tables(result)
    assert "   * - ``K1``\n     - 200\n     - 3\n     - 2\n     - 30.0 ± 10.0\n     - 60.0 ± 20.0" in text
    assert "   * - K5 - K1\n     - Table 4.3\n     - classes with boxes\n     - +1.2\n     - [+0.4, +2.0]\n" \
           "     - [+0.4, +2.0]\n     - +1.0\n     - +1.0, +1.4\n     - holds\n" in text
    c = result["comparisons"]["K5 - K1"]
    c.update(low=0.001, high=0.017)  # percentile interval (reflected) [+0.7, +2.3]: both exclude zero
    assert "     - [+0.1, +1.7]\n     - [+0.7, +2.3]\n     - +1.0\n     - +1.0, +1.4\n     - holds\n" in \
        stats.comparisons_table(result)
    c.update(difference=0.002, low=0.001, high=0.017)  # percentile [-1.3, +0.3] includes zero: no direction
    assert "     - within noise\n" in stats.comparisons_table(result)
    assert "   * - 200\n     - decoupled\n     - 1\n     - 9.00\n" in text


def test_docs_page_holds_the_committed_results():
    """Every table of docs/reproductions_rfcn3000.rst is generated from the committed JSON."""
    docs = os.path.join(os.path.dirname(__file__), "..", "..", "docs")
    result = stats.load(os.path.join(docs, "_static", "rfcn3000_results.json"))
    with open(os.path.join(docs, "reproductions_rfcn3000.rst")) as f:
        page = f.read()
    for table in (stats.runs_table, stats.comparisons_table, stats.nms_table, stats.rpn_table, stats.speed_table):
        assert table(result) in page, table.__name__
    assert stats.superclass_table(stats.load(os.path.join(docs, "_static", "rfcn3000_superclasses.json"))) in page
    assert stats.two_scale_table(stats.load(os.path.join(docs, "_static", "rfcn3000_two_scale.json"))) in page
    for c in result["comparisons"].values():  # a direction holds only where its interval excludes zero
        assert c["holds"] == (c["low"] > 0 or c["high"] < 0) and c["low"] <= c["high"]


def test_a_finished_run_trained_with_other_settings_is_named(tmp_path, data_dir):
    out = str(tmp_path / "run")
    argv = ["--out", out, "--synthetic-dir", data_dir, "--epochs", "1", "--no-add-classes", *TINY]
    r = train.main(argv)
    stored = json.loads(json.dumps(r["args"], default=float))
    assert reproduce.changed_settings(stored, argv) == []
    assert reproduce.changed_settings(stored, [*argv, "--rpn-objectness", "--epochs", "2"]) == ["epochs",
                                                                                                  "rpn_objectness"]


@pytest.mark.slow
def test_reproduce_end_to_end_on_tiny_data(tmp_path, monkeypatch):
    # two runs, two seeds, in subprocesses: stored detections -> paired bootstrap -> the page's tables
    root = os.path.join(os.path.dirname(__file__), "..", "..")
    monkeypatch.setenv("PYTHONPATH", os.path.abspath(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = str(tmp_path / "repro")
    r = reproduce.main(["--out", out, "--seeds", "0", "1", "--budget-seeds", "--runs", "K1", "K5",
                        "--resamples", "20", "--", "--epochs", "1", *TINY])
    assert set(r["summary"]) == {"K1", "K5"} and r["summary"]["K5"]["seeds"] == [0, 1]
    c = r["comparisons"]["K5 - K1"]
    runs = {(x["run"], x["seed"]): x["AP"] for x in r["runs"]}
    # the bootstrap's column 0 is each run's own COCO AP; the difference is the seed-mean of K5 - K1
    assert c["a"] == pytest.approx([runs[("K5", 0)], runs[("K5", 1)]], abs=1e-9)
    assert c["difference"] == pytest.approx(np.mean(c["a"]) - np.mean(c["b"]), abs=1e-9)
    assert {"K5: NMS per superclass - per class", "K5: NMS per agnostic - per class"} <= set(r["comparisons"])
    assert open(os.path.join(out, "tables.rst")).read() == stats.page_tables(r)
    # --only-speed replaces the speed rows and keeps every run and comparison as it was
    row = {"classes": 200, "head": "decoupled", "threads": 1, "images_per_s": 7.0, "head_forward_ms": 2.0,
           "postprocess_ms": 1.0, "parameters_M": 1.0}
    monkeypatch.setattr(reproduce, "speed", lambda **kw: [row])
    again = reproduce.main(["--out", out, "--only-speed", "--json", str(tmp_path / "copy.json")])
    assert again["speed"] == [row] and again["comparisons"] == json.loads(json.dumps(r["comparisons"]))
    assert stats.load(str(tmp_path / "copy.json")) == stats.load(os.path.join(out, "results.json")) == again


def test_paired_arms_scored_on_different_classes_are_refused():
    def run(name, classes):
        return {"run": name, "seed": 0, "known": {"coco": {"per_class": {str(c): 0.1 for c in classes}}}}

    with pytest.raises(ValueError, match="K5 - K1: K5 and K1 .seed 0. were evaluated on different classes"):
        stats.compare([run("K5", [1, 2, 3]), run("K1", [1, 2])], "unused", {}, [])


def test_only_speed_needs_a_finished_reproduction(tmp_path):
    with pytest.raises(SystemExit, match="--only-speed needs the results of a full reproduction"):
        reproduce.main(["--out", str(tmp_path), "--only-speed"])
