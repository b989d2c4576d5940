"""examples/snip_sniper: every recipe trains, evaluates and resumes end to end on tiny data."""

import json
import os
import sys

import pytest
import torch

HERE = os.path.dirname(__file__)
EXAMPLE = os.path.join(HERE, "..", "..", "examples", "snip_sniper")
sys.path.insert(0, os.path.join(HERE, "..", "..", "examples"))
import common  # noqa: E402

# unique module names: examples/rfcn3000 has a train.py and a reproduce.py too
train = common.import_script(os.path.join(EXAMPLE, "train.py"), "snip_sniper_train")
reproduce = common.import_script(os.path.join(EXAMPLE, "reproduce.py"), "snip_sniper_reproduce")

TINY = ["--synthetic", "4", "2", "--size-scale", "0.25", "--max-iters", "2", "--batch-size", "2",
        "--rpn-epochs", "1", "--warmup", "1", "--log-every", "1", "--threads", "1"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("snip_sniper_data"))


@pytest.mark.parametrize("recipe", [["single"], ["multiscale"], ["snip"], ["sniper"], ["sniper", "--no-negatives"]])
def test_recipe_trains_evaluates_and_resumes(recipe, data_dir, tmp_path, capsys):
    out = str(tmp_path / "run")
    args = ["--recipe", *recipe, "--out", out, "--synthetic-dir", data_dir, *TINY]
    first = train.main([*args, "--epochs", "1"])
    assert set(first["coco"]) >= {"AP", "AP50", "APs", "APm", "APl", "ARs", "ARm", "ARl"}
    assert all(-1 <= v <= 1 for v in first["coco"].values())
    assert json.load(open(os.path.join(out, "results.json")))["recipe"] == first["recipe"]
    assert os.path.getsize(os.path.join(out, "loss.png")) > 0
    assert os.path.exists(os.path.join(out, "detections_000.png"))
    ckpt = torch.load(os.path.join(out, "checkpoint.pt"), weights_only=True)
    assert ckpt["epoch"] == 1
    before = {k: v.clone() for k, v in ckpt["model"].items()}

    second = train.main([*args, "--epochs", "2", "--resume"])
    assert "resumed from" in capsys.readouterr().out
    ckpt = torch.load(os.path.join(out, "checkpoint.pt"), weights_only=True)
    assert ckpt["epoch"] == 2  # continued, not restarted
    log = [json.loads(line) for line in open(os.path.join(out, "log.jsonl"))]
    assert {r["epoch"] for r in log if r["phase"] == "train"} == {0, 1}  # epoch 0 once, then epoch 1
    assert sum(r["phase"] == "train" and r["epoch"] == 0 for r in log) == 2  # two iterations, not repeated
    assert any(not torch.equal(before[k], ckpt["model"][k]) for k in before)
    assert second["train_inputs_per_s"] > 0


def test_snip_trains_out_of_range_objects_as_ignore_boxes(data_dir):
    args = train.parse_args(["--synthetic-dir", data_dir, "--size-scale", "0.25", "--synthetic", "4", "2"])
    args.out, args.dist = data_dir, type("D", (), {"main": True, "barrier": lambda self: None})()
    args.main = True
    data, _ = train.load_data(args)
    levels = train.scaled_levels(train.SNIP_LEVELS, 0.25)
    snip = train.LevelImages(data, levels, ranges=True)
    mst = train.LevelImages(data, levels, ranges=False)
    for n in range(len(snip)):
        (_, s), (_, m) = snip[n], mst[n]
        i, k, _ = snip.items[n]
        boxes, _, (h, w) = data.annotations(i)
        f = levels[k][0].factor(h, w)
        assert len(s["boxes"]) + len(s["ignore_boxes"]) == len(m["boxes"]) + len(m["ignore_boxes"])
        # every target of SNIP is in the level's range (in original pixels); MST keeps them all
        size = ((s["boxes"][:, 2:] - s["boxes"][:, :2]).prod(1) / f**2).sqrt()
        assert ((size >= levels[k][1].lo * 0.9) & (size < levels[k][1].hi * 1.1)).all()
    assert sum(len(mst[n][1]["boxes"]) for n in range(len(mst))) > sum(len(snip[n][1]["boxes"]) for n in range(len(snip)))


def test_missing_or_malformed_dataset_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        train.main(["--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")])
    assert "--data (train)" in capsys.readouterr().err
    (tmp_path / "bad" / "train" / "images").mkdir(parents=True)
    (tmp_path / "bad" / "train" / "annotations.json").write_text("{\"images\": 3}")
    with pytest.raises(SystemExit):
        train.main(["--data", str(tmp_path / "bad"), "--out", str(tmp_path / "o")])
    assert "not a valid COCO annotation file" in capsys.readouterr().err


def test_help_documents_every_flag_with_its_default(capsys):
    with pytest.raises(SystemExit):
        train.main(["--help"])
    text = capsys.readouterr().out
    for flag in ("--recipe", "--no-negatives", "--data", "--backbone", "--pretrained", "--device", "--amp",
                 "--resume", "--epochs", "--rpn-epochs", "--size-scale", "--seed"):
        assert flag in text
    assert "default: sniper" in text and "default: 5" in text


def test_reproduction_table_summarises_seeds():
    runs = [{"recipe": r, "seed": s, "coco": {m: 0.1 * s + (0.2 if r == "snip" else 0) for m in reproduce.METRICS},
             "train_pixels_per_image": 100.0 if r == "single" else 250.0, "train_inputs_per_s": 2.0,
             "train_seconds": 10.0, "inference_s_per_image": 0.5} for r in ("single", "snip") for s in (0, 1)]
    summary = reproduce.summarise(runs)
    assert summary["snip"]["AP"]["mean"] == pytest.approx(0.25) and summary["snip"]["AP"]["spread"] == pytest.approx(0.05)
    assert summary["snip"]["pixels_vs_single"] == pytest.approx(2.5)
    assert "| snip | 25.0 ± 5.0 |" in reproduce.table(summary)


def test_reproduce_runs_seeds_side_by_side_and_writes_the_table(data_dir, tmp_path):
    out = str(tmp_path / "repro")
    os.makedirs(out)
    os.symlink(data_dir, os.path.join(out, "data"))  # the data the other tests generated
    report = reproduce.main(["--seeds", "0", "1", "--jobs", "2", "--recipes", "single", "--out", out, "--",
                             *TINY, "--epochs", "1", "--draw", "0"])
    assert sorted(r["seed"] for r in report["runs"]) == [0, 1]
    assert report["summary"]["single"]["pixels_vs_single"] == 1.0
    assert "| single |" in open(os.path.join(out, "results.md")).read()
    mtime = os.path.getmtime(os.path.join(out, "single_s0", "results.json"))
    reproduce.main(["--seeds", "0", "--recipes", "single", "--out", out, "--", *TINY, "--epochs", "1"])
    assert os.path.getmtime(os.path.join(out, "single_s0", "results.json")) == mtime  # done runs are not rerun
