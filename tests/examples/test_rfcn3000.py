"""examples/rfcn3000: the R-FCN-3000 pipeline end to end on tiny data (super-classes,
training, inference with NMS groups, objectness and COCO evaluation, add_class, resume),
its command line and its reproduction table. The blocks it calls are tested in
tests/heads and tests/detection."""

import json
import os
import sys

import pytest

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "rfcn3000")
sys.path.insert(0, os.path.join(EXAMPLE, ".."))
import common  # noqa: E402

# unique module names: examples/snip/, sniper/ and msb_rnn/ have a train.py or reproduce.py too
train = common.import_script(os.path.join(EXAMPLE, "train.py"), "rfcn3000_train")
reproduce = common.import_script(os.path.join(EXAMPLE, "reproduce.py"), "rfcn3000_reproduce")

TINY = ["--families", "3", "--classes-per-family", "4", "--held-out-per-family", "1", "--synthetic", "12", "6",
        "--per-class", "3", "--image-size", "96", "--cls-epochs", "1", "--max-steps", "2", "--batch-size", "2",
        "--proposals", "50", "--width", "16", "--pool-size", "3"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("rfcn3000_data"))


def test_pipeline_end_to_end_then_resume(tmp_path, data_dir, capsys):
    out = str(tmp_path / "run")
    cache = ["--classifier-cache", data_dir]  # the resumed run reuses the classification network
    first = train.main(["--out", out, "--synthetic-dir", data_dir, "--epochs", "1", "--superclasses", "2", *cache, *TINY])
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


@pytest.mark.parametrize("argv, message", [(["--data", "/no/such/folder"], "--data: no such folder"),
                                           (["--epochs", "0"], "--epochs must be >= 1"),
                                           (["--held-out-per-family", "42"], "--held-out-per-family")])
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


def test_reproduce_summary_and_table():
    def run(name, seed, ap, held=None):
        r = {"run": name, "seed": seed, "num_known": 200, "train_seconds": 10.0,
             "superclasses": {"recovery_ari": 0.5, "recovery_purity": 0.6},
             "known": {"coco": {"AP": ap, "AP50": 2 * ap}, "objectness_all": {"AP": 0.3},
                       "objectness_held_out": {"AP": 0.2, "AP50": 0.4}, "images_per_s": 10.0, "head_ms_per_image": 3.0}}
        if held is not None:
            r.update(held_out_AP=held, all={"coco": {"AP": ap}}, added=[4])
        return r

    s = reproduce.summarise([run("K1", 0, 0.2, 0.1), run("K1", 1, 0.4, 0.3), run("rfcn", 0, 0.5)])
    assert s["K1"]["AP"]["mean"] == pytest.approx(0.3) and s["K1"]["AP"]["spread"] == pytest.approx(0.1)
    assert s["K1"]["held_out_AP"]["mean"] == pytest.approx(0.2) and "held_out_AP" not in s["rfcn"]
    text = reproduce.table(s, [{"classes": 200, "head": "decoupled", "images_per_s": 9.0, "head_forward_ms": 2.0,
                                "postprocess_ms": 1.0, "parameters_M": 1.0}])
    assert "| K1 | 200 | 30.0 ± 10.0 | 60.0 ± 20.0 |" in text and "| 200 | decoupled | 9.00 | 2.0 | 1.0 |" in text
