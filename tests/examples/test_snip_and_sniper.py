"""examples/snip and examples/sniper: every recipe trains, evaluates and resumes end
to end on tiny data through the drivers' command lines; the reproduction runs both."""

import argparse
import json
import math
import os
import sys

import numpy as np
import pytest
import torch

HERE = os.path.dirname(__file__)
EXAMPLES = os.path.join(HERE, "..", "..", "examples")
sys.path.insert(0, EXAMPLES)
import common  # noqa: E402

from scalekit.boxes import box_size  # noqa: E402

# unique module names: examples/rfcn3000 has a train.py and a reproduce.py too
snip = common.import_script(os.path.join(EXAMPLES, "snip", "train.py"), "snip_train")
sniper = common.import_script(os.path.join(EXAMPLES, "sniper", "train.py"), "sniper_train")
reproduce = common.import_script(os.path.join(EXAMPLES, "sniper", "reproduce.py"), "sniper_reproduce")

TINY = ["--synthetic", "4", "2", "--size-scale", "0.25", "--max-iters", "2", "--batch-size", "2",
        "--warmup", "1", "--log-every", "1", "--threads", "1"]
DRIVERS = {"single": (snip, ["--recipe", "single"]), "multiscale": (snip, ["--recipe", "multiscale"]),
           "snip": (snip, ["--recipe", "snip"]), "sniper": (sniper, ["--rpn-epochs", "1"]),
           "sniper_no_neg": (sniper, ["--no-negatives"])}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("snip_sniper_data"))


@pytest.mark.parametrize("recipe", list(DRIVERS))
def test_recipe_trains_evaluates_and_resumes(recipe, data_dir, tmp_path, capsys):
    out = str(tmp_path / "run")
    train, flags = DRIVERS[recipe]
    args = [*flags, "--out", out, "--synthetic-dir", data_dir, *TINY]
    first = train.main([*args, "--epochs", "1"])
    assert first["recipe"] == recipe
    assert set(first["coco"]) >= {"AP", "AP50", "APs", "APm", "APl", "ARs", "ARm", "ARl"}
    assert all(-1 <= v <= 1 for v in first["coco"].values())
    assert json.load(open(os.path.join(out, "results.json")))["recipe"] == first["recipe"]
    assert os.path.getsize(os.path.join(out, "loss.png")) > 0
    assert os.path.exists(os.path.join(out, "detections_000.png"))
    saved = torch.load(os.path.join(out, "detections.pt"), weights_only=True)
    val_ids = [im["id"] for im in json.load(open(os.path.join(data_dir, "val", "annotations.json")))["images"]]
    assert sorted(saved) == sorted(val_ids) and all(set(d) == {"boxes", "scores", "labels"} for d in saved.values())
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


def test_sniper_mines_proposals_once_and_trains_on_negative_chips(data_dir, tmp_path, capsys):
    out = str(tmp_path / "run")
    result = sniper.main(["--rpn-epochs", "1", "--out", out, "--synthetic-dir", data_dir, *TINY, "--epochs", "1"])
    proposals = torch.load(os.path.join(out, "proposals.pt"), weights_only=True)
    assert len(proposals) == 4 and all(p.shape[1] == 4 for p in proposals)
    log = [json.loads(line) for line in open(os.path.join(out, "log.jsonl"))]
    assert {r["phase"] for r in log} == {"rpn", "train"}
    assert "loss_objectness" in log[0] and "loss_classifier" not in log[0]  # the RPN-only run
    assert result["rpn_seconds"] > 0


def test_sniper_without_negatives_says_there_is_nothing_to_resample(data_dir, tmp_path):
    with pytest.warns(UserWarning, match="no negative chips to resample"):
        sniper.main(["--no-negatives", "--out", str(tmp_path / "r"), "--synthetic-dir", data_dir, *TINY, "--epochs", "2"])


def test_missing_or_malformed_dataset_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        snip.main(["--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")])
    assert "--data (train)" in capsys.readouterr().err
    (tmp_path / "bad" / "train" / "images").mkdir(parents=True)
    (tmp_path / "bad" / "train" / "annotations.json").write_text("{\"images\": 3}")
    with pytest.raises(SystemExit):
        sniper.main(["--data", str(tmp_path / "bad"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert "--data (train)" in err and "annotations.json" in err and "'images' must be a list" in err


@pytest.mark.parametrize("driver, own, default", [(snip, ("--recipe",), "default: snip"),
                                                   (sniper, ("--no-negatives", "--rpn-epochs"), "default: 2")])
def test_help_documents_every_flag_with_its_default(driver, own, default, capsys):
    with pytest.raises(SystemExit):
        driver.main(["--help"])
    text = capsys.readouterr().out
    for flag in (*own, "--data", "--backbone", "--pretrained", "--device", "--amp",
                 "--resume", "--epochs", "--size-scale", "--seed"):
        assert flag in text
    assert default in text and "default: 5" in text


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
                             *TINY, "--rpn-epochs", "1", "--epochs", "1", "--draw", "0"])
    assert sorted(r["seed"] for r in report["runs"]) == [0, 1]
    assert report["summary"]["single"]["pixels_vs_single"] == 1.0
    assert "| single |" in open(os.path.join(out, "results.md")).read()
    mtime = os.path.getmtime(os.path.join(out, "single_s0", "results.json"))
    reproduce.main(["--seeds", "0", "--recipes", "single", "--out", out, "--", *TINY, "--epochs", "1"])
    assert os.path.getmtime(os.path.join(out, "single_s0", "results.json")) == mtime  # done runs are not rerun


def test_a_budget_is_iterations_across_epochs_with_ap_at_checkpoints(data_dir, tmp_path):
    out = str(tmp_path / "run")
    result = snip.main(["--recipe", "multiscale", "--out", out, "--synthetic-dir", data_dir, *TINY,
                        "--iterations", "3", "--eval-at", "1", "3", "--draw", "0"])
    log = [json.loads(line) for line in open(os.path.join(out, "log.jsonl"))]
    train = [r for r in log if r["phase"] == "train"]
    assert [r["iter"] for r in train] == [1, 2, 3]  # 3 steps: an epoch of 2 (--max-iters), then one more, cut
    assert [r["epoch"] for r in train] == [0, 0, 1]
    assert [p["iteration"] for p in result["budget"]] == [1, 3]
    assert result["budget"][-1]["AP"] == pytest.approx(result["coco"]["AP"])  # the last checkpoint is the model
    assert result["iterations"] == 3 and result["train_seconds"] > 0


def test_sniper_spends_its_budget_on_the_rpn_run_first(data_dir, tmp_path):
    out = str(tmp_path / "run")
    result = sniper.main(["--out", out, "--synthetic-dir", data_dir, *TINY, "--iterations", "4",
                          "--rpn-iterations", "1", "--draw", "0"])
    log = [json.loads(line) for line in open(os.path.join(out, "log.jsonl"))]
    assert sum(r["phase"] == "rpn" for r in log) == 1 and sum(r["phase"] == "train" for r in log) == 3
    assert result["detector_iterations"] == 3


@pytest.mark.parametrize("driver, argv, message", [
    (sniper, ["--iterations", "4"], "needs --rpn-iterations"),
    (sniper, ["--iterations", "4", "--rpn-iterations", "4"], "--rpn-iterations must lie in 1..3"),
    (snip, ["--iterations", "4", "--eval-at", "5"], "--eval-at must lie in 1..--iterations"),
    (snip, ["--recipe", "multiscale", "--warm-start-epochs", "1"], "--warm-start-epochs is for --recipe snip")])
def test_budget_flags_that_cannot_hold_are_refused(driver, argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit):
        driver.main([*argv, "--out", str(tmp_path / "o")])
    assert message in capsys.readouterr().err


def test_snip_warm_start_trains_its_first_epochs_without_ranges(data_dir, tmp_path, monkeypatch):
    seen = []

    class Spy(snip.LevelDataset):
        def __getitem__(self, k):
            item = super().__getitem__(k)
            seen.append((self.epoch, "valid_range" in item[1]))
            return item

    monkeypatch.setattr(snip, "LevelDataset", Spy)
    snip.main(["--recipe", "snip", "--warm-start-epochs", "1", "--epochs", "2", "--out", str(tmp_path / "r"),
               "--synthetic-dir", data_dir, *TINY, "--draw", "0"])
    assert {e for e, _ in seen} == {0, 1}
    assert all(ranged == (epoch >= 1) for epoch, ranged in seen)


def test_table_2_1_arms_train_at_their_scale_and_range_and_test_at_one_level(data_dir, tmp_path, monkeypatch):
    seen, tested = [], []

    class Spy(snip.LevelDataset):
        def __getitem__(self, k):
            item = super().__getitem__(k)
            seen.append((tuple(item[0].shape[1:]), item[1]))
            return item

    def evaluate(args, model, val, levels, draw=None, save=True):
        tested.append(levels)
        return {m: 0.0 for m in ("AP", "AP50", "APs", "APm", "APl", "ARs", "ARm", "ARl")}, 0.0

    monkeypatch.setattr(snip, "LevelDataset", Spy)
    monkeypatch.setattr(snip.common, "evaluate_detector", evaluate)
    snip.main(["--recipe", "single", "--scale", "1400", "2000", "--train-range", "0", "80", "--test-level", "1400",
               "2000", "--epochs", "1", "--out", str(tmp_path / "r"), "--synthetic-dir", data_dir, *TINY])
    s = 0.25  # TINY's --size-scale
    spec = snip.ScaleSpec.shorter_side(1400 * s, 2000 * s)
    for shape, target in seen:  # every input at the 1400 scale, objects over 80 px ignored
        assert target["valid_range"].tolist() == pytest.approx([0.0, 80 * s * target["chip"].scale])
        sizes = box_size(target["boxes"]) / target["chip"].scale
        assert (sizes < 80 * s + 1e-3).all()
        assert target["chip"].scale == pytest.approx(spec.factor(*[round(v / target["chip"].scale) for v in shape]),
                                                     rel=0.01)
    assert any(len(t["ignore_boxes"]) for _, t in seen)  # some objects were too large
    assert [(lv[0], lv[1].hi) for lv in tested[0]] == [(spec, float("inf"))]


def test_sniper_reports_rpn_recall_by_size_and_two_scales_drops_the_finest(data_dir, tmp_path, monkeypatch):
    scales = []

    class Spy(sniper.ChipDataset):
        def __getitem__(self, k):
            item = super().__getitem__(k)
            scales.append(float(item[1]["chip"].scale))
            return item

    monkeypatch.setattr(sniper, "ChipDataset", Spy)
    result = sniper.main(["--no-negatives", "--two-scales", "--epochs", "1", "--out", str(tmp_path / "r"),
                          "--synthetic-dir", data_dir, *TINY, "--draw", "0"])
    finest = sniper.SNIPER_LEVELS[0][0].scaled(0.25).factor(100, 100)  # a fixed factor: 3x at TINY's size scale
    assert scales and not any(abs(f - finest) < 1e-6 for f in scales) and result["recipe"] == "sniper_no_neg_2scales"
    recall = result["proposal_recall"]
    gts = json.load(open(os.path.join(data_dir, "val", "annotations.json")))["annotations"]
    assert sum(recall["num_gt_by_size"].values()) == sum(not a.get("iscrowd", 0) for a in gts)  # every box in a bin
    assert 0.0 <= recall["AR"] <= recall["AR50"] <= 1.0


def test_minival_chooses_the_test_ranges_and_ap_is_reported_on_the_other_images(data_dir, tmp_path, monkeypatch):
    evaluated = []
    real = common.coco_stats

    def spy(args, val, predictions):
        evaluated.append(sorted(predictions))
        return real(args, val, predictions)

    monkeypatch.setattr(common, "coco_stats", spy)
    out = str(tmp_path / "r")
    result = snip.main(["--recipe", "multiscale", "--epochs", "1", "--minival", "1", "--out", out,
                        "--synthetic-dir", data_dir, *TINY, "--draw", "0"])
    val_ids = [im["id"] for im in json.load(open(os.path.join(data_dir, "val", "annotations.json")))["images"]]
    tuning, final = evaluated[:-1], evaluated[-1]
    assert len(tuning) == len(common.TEST_RANGE_WIDENINGS) + 1  # every candidate scored on minival ...
    assert all(ids == val_ids[:1] for ids in tuning)
    assert final == val_ids[1:]  # ... and the reported AP never sees a minival image
    record = result["test_ranges"]
    assert record["choice"] == max(record["minival_AP"], key=lambda k: (record["minival_AP"][k], -list(
        record["minival_AP"]).index(k)))
    assert len(record["ranges"]) == 3 and result["val_images"] == 2


def test_minival_must_leave_test_images(data_dir, tmp_path):
    with pytest.raises(SystemExit):
        snip.main(["--recipe", "multiscale", "--epochs", "1", "--minival", "2", "--out", str(tmp_path / "r"),
                   "--synthetic-dir", data_dir, *TINY, "--draw", "0"])


def _cnn_b_checkpoint(path, seed=0):
    torch.manual_seed(seed)
    net = common.PremiseNet(3)
    for p in net.parameters():
        p.data.normal_()
    torch.save(net.state_dict(), path)
    return net


def test_premise_backbone_starts_from_the_cnn_b_checkpoint(tmp_path):
    net = _cnn_b_checkpoint(tmp_path / "cnn_b.pt")
    detector = common.build_detector("premise", 3, False, str(tmp_path / "cnn_b.pt"))
    body = detector.backbone
    assert body.stride == 16 and body.out_channels == 64
    theirs = net.body.state_dict()
    assert all(torch.equal(v, theirs[k]) for k, v in body.state_dict().items())  # every tensor, BN stats too
    scratch = common.build_detector("premise", 3, False)
    assert not torch.equal(scratch.backbone[0].weight, body[0].weight)
    # the detector normalises images as premise.py trained CNN-B: (x - 0.5) / 0.25
    image = torch.rand(3, 64, 64)
    normalised = detector.transform.normalize(image)
    assert torch.allclose(normalised, (image - 0.5) / 0.25)


def test_premise_fpn_puts_an_fpn_on_the_cnn_b_stages_it_was_initialised_with(tmp_path):
    net = _cnn_b_checkpoint(tmp_path / "cnn_b.pt")
    net.eval()
    detector = common.build_detector("premise_fpn", 3, False, str(tmp_path / "cnn_b.pt")).eval()
    theirs = net.body.state_dict()
    assert all(torch.equal(v, theirs[k]) for k, v in detector.backbone.body.state_dict().items())
    seen = {}
    detector.backbone.fpn.register_forward_hook(lambda m, inp, out: seen.update(inputs=inp[0], outputs=out))
    image = torch.rand(3, 96, 128)
    with torch.no_grad():
        detector([image])
        x = detector.transform.normalize(image)[None]
        # the FPN's inputs are CNN-B's own stage outputs at strides 4, 8 and 16
        stages = [net.body[:end + 1](x) for end in (9, 15, 21)]  # the ReLU after each stage's second conv
    assert [tuple(v.shape[-2:]) for v in seen["inputs"].values()] == [(24, 32), (12, 16), (6, 8)]
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(seen["inputs"].values(), stages))
    assert torch.allclose(stages[-1], net.body(x), atol=1e-5)
    # RoIs are pooled from the three levels (a box is routed by its size), not from one map
    assert detector.roi_heads.box_roi_pool.scales == [0.25, 0.125, 0.0625]


def test_init_refuses_other_checkpoints_and_other_backbones(tmp_path, capsys):
    torch.save({"body.0.weight": torch.zeros(1)}, tmp_path / "bad.pt")
    with pytest.raises(SystemExit):
        common.build_detector("premise", 3, False, str(tmp_path / "bad.pt"))
    assert "not a CNN-B of this shape" in capsys.readouterr().err
    _cnn_b_checkpoint(tmp_path / "cnn_b.pt")
    with pytest.raises(SystemExit):
        common.build_detector("tiny", 3, False, str(tmp_path / "cnn_b.pt"))
    assert "--init is for --backbone premise or premise_fpn" in capsys.readouterr().err


def test_the_scale_true_set_trains_the_premise_detector_from_its_checkpoint(tmp_path):
    _cnn_b_checkpoint(tmp_path / "cnn_b.pt")
    data = str(tmp_path / "data_st")
    result = snip.main(["--recipe", "multiscale", "--backbone", "premise", "--init", str(tmp_path / "cnn_b.pt"),
                        "--render", "scale_true", "--epochs", "1", "--out", str(tmp_path / "r"),
                        "--synthetic-dir", data, *TINY, "--draw", "0"])
    assert open(os.path.join(data, "render.txt")).read() == "scale_true"
    assert 0.0 <= result["coco"]["AP"] <= 1.0
    with pytest.raises(SystemExit):  # the folder holds scale-true images: today's renderer is refused there
        snip.main(["--recipe", "multiscale", "--out", str(tmp_path / "r2"), "--synthetic-dir", data, *TINY])


def test_table_2_1_reproduction_runs_every_arm_at_one_budget_and_pairs_them(tmp_path):
    repro = common.import_script(os.path.join(EXAMPLES, "snip", "reproduce.py"), "snip_reproduce")
    _cnn_b_checkpoint(tmp_path / "cnn_b.pt")
    out = str(tmp_path / "repro")
    summary = repro.main(["--init", str(tmp_path / "cnn_b.pt"), "--out", out, "--seeds", "0", "--jobs", "1",
                          "--iterations", "4", "--synthetic", "4", "3", "--resamples", "20",
                          "--arms", "mst", "snip", "mst_scratch", "snip_scratch", "--figure", str(tmp_path / "b.png"),
                          "--extra", "--size-scale", "0.25", "--batch-size", "2", "--warmup", "1", "--log-every", "1"])
    runs = summary["runs"]
    assert set(runs) == {"mst_s0", "snip_s0", "mst_scratch_s0", "snip_scratch_s0"}
    for name, r in runs.items():
        log = [json.loads(line) for line in open(os.path.join(out, name, "log.jsonl"))]
        assert sum(x["phase"] == "train" for x in log) == 4  # the same budget for every arm
        assert [p["iteration"] for p in r["budget"]] == [1, 2]
        assert r["test_level"] == [1400.0, 2000.0] and r["backbone"] == "premise"
        assert r["init"] == (None if "scratch" in name else str(tmp_path / "cnn_b.pt"))
        aps = summary["arms"][name[:-3]]["APs"]["per_seed"][0]  # the bootstrap's column 0 is pycocotools' AP_S
        assert aps == pytest.approx(r["coco"]["APs"], abs=1e-9) or (math.isnan(aps) and r["coco"]["APs"] == -1)
    assert {c["a"] + "-" + c["b"] for c in summary["comparisons"]} == {"snip-mst", "snip_scratch-mst_scratch"}
    assert "interaction" in summary and summary["test_images"] == 3
    assert "comparisons_all_sizes" not in summary  # Table 2.1 compares AP_S only, as the thesis
    assert "a - b [95 % basic bootstrap interval]" in open(os.path.join(out, "table.rst")).read()
    # AP against budget: the figure's points are the arms' AP_S at 1/4, 1/2 and all of the budget
    points = [json.loads(line) for line in open(tmp_path / "b.jsonl")]
    assert [p["iteration"] for p in points] == [1, 2, 4] and os.path.getsize(tmp_path / "b.png") > 0
    for arm, r in summary["arms"].items():
        expected = [100 * p["APs"] for p in r["budget"]] + [100 * r["APs"]["mean"]]
        assert [p[arm] for p in points] == pytest.approx(expected, nan_ok=True)


def test_a_second_data_draw_trains_and_tests_on_its_own_images_and_is_resampled_apart(tmp_path, capsys):
    repro = common.import_script(os.path.join(EXAMPLES, "snip", "reproduce.py"), "snip_reproduce_draws")
    _cnn_b_checkpoint(tmp_path / "cnn_b.pt")
    out = str(tmp_path / "repro")
    summary = repro.main(["--init", str(tmp_path / "cnn_b.pt"), "--out", out, "--seeds", "0", "--draws", "0", "1",
                          "--jobs", "1", "--arms", "mst", "snip", "--iterations", "4", "--synthetic", "4", "3",
                          "--resamples", "20", "--extra", "--size-scale", "0.25", "--batch-size", "2",
                          "--warmup", "1", "--log-every", "1"])
    runs = summary["runs"]
    assert {n: r["synthetic_draw"] for n, r in runs.items()} == {"mst_s0": 0, "snip_s0": 0,
                                                                 "mst_d1_s0": 1, "snip_d1_s0": 1}
    # draw 1 is other images and boxes, in its own folder, marked as draw 1
    ann = [json.load(open(os.path.join(out, d, "val", "annotations.json")))["annotations"] for d in ("data", "data_d1")]
    assert [a["bbox"] for a in ann[0]] != [a["bbox"] for a in ann[1]]
    assert open(os.path.join(out, "data_d1", "render.txt")).read() == "scale_true, draw 1"
    assert summary["draws"] == [0, 1] and summary["test_images"] == 6  # each draw's 3 test images
    for arm in ("mst", "snip"):  # column 0 of each run's bootstrap is its pycocotools AP_S on its own draw
        got = summary["arms"][arm]["APs"]["per_seed"]
        want = [runs[n]["coco"]["APs"] for n in (f"{arm}_s0", f"{arm}_d1_s0")]
        assert got == pytest.approx([math.nan if w == -1 else w for w in want], abs=1e-9, nan_ok=True)
    # the bootstrap scores each run on its own draw's test images: draw 1's ground truth as mst_d1_s0's
    # detections is a perfect AP there (on draw 0's images it would be near zero)
    from scalekit.datasets import CocoDetection

    root = os.path.join(out, "data_d1", "val")
    val = CocoDetection(os.path.join(root, "images"), os.path.join(root, "annotations.json"))
    label = {c: k for k, c in val.label_to_category.items()}
    perfect = {im["id"]: {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)}
               for im in val.coco.dataset["images"]}
    for a in val.coco.dataset["annotations"]:
        d, (x, y, w, h) = perfect[a["image_id"]], a["bbox"]
        d["boxes"] = torch.cat([d["boxes"], torch.tensor([[x, y, x + w, y + h]])])
        d["scores"] = torch.cat([d["scores"], torch.ones(1)])
        d["labels"] = torch.cat([d["labels"], torch.tensor([label[a["category_id"]]])])
    torch.save(perfect, os.path.join(out, "mst_d1_s0", "detections.pt"))
    keys = {("mst", 0, 0): runs["mst_s0"], ("mst", 1, 0): runs["mst_d1_s0"]}
    ap, images = repro.bootstrap_ap(argparse.Namespace(out=out, resamples=20), keys, area="all")
    assert images == 6 and ap["mst", 1, 0][0] == pytest.approx(1.0) and ap["mst", 0, 0][0] < 0.5
    # a folder holds one draw: draw 0 is refused in draw 1's folder
    with pytest.raises(SystemExit):
        common.prepare_synthetic(os.path.join(out, "data_d1"), 0.25, (4, 3), render="scale_true")
    assert "holds the 'scale_true, draw 1' synthetic images, not 'scale_true'" in capsys.readouterr().err


def test_sniper_tables_count_the_rpn_only_run_in_the_budget_and_report_recall(tmp_path, monkeypatch):
    repro = common.import_script(os.path.join(EXAMPLES, "snip", "reproduce.py"), "snip_reproduce_sniper")
    _cnn_b_checkpoint(tmp_path / "cnn_b.pt")
    areas, bootstrap = [], repro.bootstrap_ap
    monkeypatch.setattr(repro, "bootstrap_ap", lambda *a, area="small": areas.append(area) or bootstrap(*a, area=area))
    out = str(tmp_path / "repro")
    summary = repro.main(["--init", str(tmp_path / "cnn_b.pt"), "--out", out, "--seeds", "0", "--jobs", "1",
                          "--table", "sniper", "--arms", "sniper", "sniper_noneg", "--iterations", "8",
                          "--synthetic", "4", "3", "--resamples", "20",
                          "--extra", "--size-scale", "0.25", "--batch-size", "2", "--warmup", "1", "--log-every", "1"])
    phases = {}
    for name in ("sniper_s0", "sniper_noneg_s0"):
        log = [json.loads(line) for line in open(os.path.join(out, name, "log.jsonl"))]
        phases[name] = {p: sum(x["phase"] == p for x in log) for p in ("rpn", "train")}
    assert phases == {"sniper_s0": {"rpn": 2, "train": 6}, "sniper_noneg_s0": {"rpn": 0, "train": 8}}  # 8 each
    # AP against budget counts the RPN-only run: at iteration 2 sniper's detector has not trained yet
    sniper_budget = summary["runs"]["sniper_s0"]["budget"]
    assert [p["iteration"] for p in sniper_budget] == [2, 4] and math.isnan(sniper_budget[0]["APs"])
    assert not math.isnan(sniper_budget[1]["APs"])
    assert [p["iteration"] for p in summary["runs"]["sniper_noneg_s0"]["budget"]] == [2, 4]
    assert [c["a"] + "-" + c["b"] for c in summary["comparisons"]] == ["sniper-sniper_noneg"]
    # the thesis' SNIPER tables compare AP over all sizes: column 0 is each run's own pycocotools AP
    (c,) = summary["comparisons_all_sizes"]
    assert areas == ["small", "all"]
    runs = summary["runs"]
    assert (c["a"], c["b"]) == ("sniper", "sniper_noneg")
    assert c["difference"] == pytest.approx(runs["sniper_s0"]["coco"]["AP"] - runs["sniper_noneg_s0"]["coco"]["AP"],
                                            abs=1e-9)
    for arm in ("sniper", "sniper_noneg"):
        assert set(summary["arms"][arm]["rpn_recall50_by_size"]) and summary["arms"][arm]["train_inputs_per_s"] > 0
    text = open(os.path.join(out, "table_sniper.rst")).read()
    assert "RPN recall at IoU 0.5" in text and "training inputs / s" in text
    assert "comparison on AP over all sizes" in text
    assert not os.path.exists(os.path.join(out, "results.json"))  # Table 2.1's results are not overwritten


def test_fpn_arm_trains_mst_and_snip_on_the_fpn_and_pairs_them_with_the_single_level_ones(tmp_path):
    repro = common.import_script(os.path.join(EXAMPLES, "snip", "reproduce.py"), "snip_reproduce_fpn")
    _cnn_b_checkpoint(tmp_path / "cnn_b.pt")
    out = str(tmp_path / "repro")
    summary = repro.main(["--init", str(tmp_path / "cnn_b.pt"), "--out", out, "--seeds", "0", "--jobs", "1",
                          "--table", "fpn", "--iterations", "4", "--synthetic", "4", "3", "--resamples", "20",
                          "--extra", "--size-scale", "0.25", "--batch-size", "2", "--warmup", "1", "--log-every", "1"])
    runs = summary["runs"]
    assert {n: r["backbone"] for n, r in runs.items()} == {"mst_s0": "premise", "snip_s0": "premise",
                                                           "mst_fpn_s0": "premise_fpn", "snip_fpn_s0": "premise_fpn"}
    assert runs["snip_fpn_s0"]["recipe"] == "snip" and runs["mst_fpn_s0"]["recipe"] == "multiscale"
    assert all(r["init"] == str(tmp_path / "cnn_b.pt") for r in runs.values())
    assert [c["a"] + "-" + c["b"] for c in summary["comparisons"]] == ["snip-mst", "snip_fpn-mst_fpn"]
    assert "fpn_interaction" in summary and "interaction" not in summary
    text = open(os.path.join(out, "table_fpn.rst")).read()
    assert repro.FPN_INTERACTION in text and not os.path.exists(os.path.join(out, "results.json"))


def test_fpn_interaction_is_the_difference_of_the_two_snip_gains_with_its_own_verdict():
    repro = common.import_script(os.path.join(EXAMPLES, "snip", "reproduce.py"), "snip_reproduce_fpn_table")
    rng = np.random.default_rng(0)
    base = rng.uniform(0.05, 0.1, 101)  # AP_S on the images (column 0) and 100 resamples
    gains = {"mst": 0.0, "snip": 0.03, "mst_fpn": 0.0, "snip_fpn": 0.005}  # SNIP helps the single level more
    # keys (arm, draw, seed)
    ap = {(a, 0, s): base + g + rng.normal(0, 0.001, 101) for a, g in gains.items() for s in (0, 1)}
    run = {"coco": {"AP": 0.2}, "budget": [], "train_pixels_per_image": 1.0, "train_seconds": 1.0,
           "train_inputs_per_s": 1.0}
    args = argparse.Namespace(seeds=[0, 1], draws=[0], iterations=4)
    summary = repro.summarise(args, {k: run for k in ap}, ap)
    mean = {a: np.mean([ap[a, 0, 0], ap[a, 0, 1]], axis=0) for a in gains}
    expected = (mean["snip"] - mean["mst"] - mean["snip_fpn"] + mean["mst_fpn"])[0]
    assert summary["fpn_interaction"]["difference"] == pytest.approx(expected) and expected > 0.02
    assert [c["a"] for c in summary["comparisons"]] == ["snip", "snip_fpn"]
    # the seed spread: the same difference on each seed's own runs, and how many seeds are above zero
    gain = [(ap["snip", 0, s] - ap["mst", 0, s] - ap["snip_fpn", 0, s] + ap["mst_fpn", 0, s])[0] for s in (0, 1)]
    assert summary["fpn_interaction"]["per_seed"] == pytest.approx(gain)
    row = repro.table(summary).split(repro.FPN_INTERACTION)[1].splitlines()
    assert row[2] == f"     - {100 * min(gain):.1f} to {100 * max(gain):.1f} (2 of 2)"
    assert row[3] == "     - larger single-level"
    ap.update({("snip_fpn", 0, s): ap["snip_fpn", 0, s] + 0.05 for s in (0, 1)})  # now the FPN gains more
    row = repro.table(repro.summarise(args, {k: run for k in ap}, ap)).split(repro.FPN_INTERACTION)[1].splitlines()
    assert row[3] == "     - larger with FPN"


def test_replication_table_puts_each_draws_verdict_side_by_side_and_says_whether_they_agree(capsys, tmp_path):
    repro = common.import_script(os.path.join(EXAMPLES, "snip", "reproduce.py"), "snip_reproduce_replication")

    def comparison(a, b, low, high):
        return {"a": a, "b": b, "difference": (low + high) / 2, "low": low, "high": high,
                "holds": low > 0 or high < 0}

    draw0 = {"seeds": [0, 1, 2, 3, 4], "comparisons": [comparison("snip", "mst", 0.002, 0.016),
                                                       comparison("800_all", "1400_lt80", -0.03, -0.01),
                                                       comparison("1400_all", "800_all", -0.01, 0.01)],
             "interaction": comparison("", "", -0.005, 0.009)}
    draw1 = {"seeds": [0, 1, 2], "draws": [1], "comparisons": [comparison("snip", "mst", 0.001, 0.02),
                                                               comparison("800_all", "1400_lt80", -0.02, 0.004)],
             "interaction": comparison("", "", -0.01, 0.01)}
    rows = repro.replication_table([draw0, draw1]).splitlines()
    assert rows[4:7] == ["     - draw 0, 5 seeds: a - b [interval], direction",
                         "     - draw 1, 3 seeds: a - b [interval], direction", "     - directions"]
    at = {rows[i][7:]: rows[i + 1:i + 4] for i in range(7, len(rows), 4)}
    assert list(at) == ["snip - mst", "800_all - 1400_lt80", "(snip - mst) pretrained - (snip - mst) scratch"]
    assert at["snip - mst"] == ["     - 0.9 [0.2, 1.6], as the thesis", "     - 1.1 [0.1, 2.0], as the thesis",
                                "     - same"]
    assert at["800_all - 1400_lt80"][1:] == ["     - -0.8 [-2.0, 0.4], within noise", "     - differ"]
    assert at["(snip - mst) pretrained - (snip - mst) scratch"][2] == "     - same"  # within noise on both
    with pytest.raises(ValueError, match="summaries: expected at least two"):
        repro.replication_table([draw0])
    for i, d in enumerate((draw0, draw1)):  # the command line prints the same table from the files
        (tmp_path / f"{i}.json").write_text(json.dumps(d))
    repro.main(["--replication", str(tmp_path / "0.json"), str(tmp_path / "1.json")])
    assert capsys.readouterr().out == "\n".join(rows) + "\n"


def test_reproduce_names_the_missing_cnn_b_checkpoint(tmp_path, capsys):
    repro = common.import_script(os.path.join(EXAMPLES, "snip", "reproduce.py"), "snip_reproduce_init")
    for argv, message in (([], "--init is required"), (["--init", str(tmp_path / "no.pt")], "no.pt does not exist")):
        with pytest.raises(SystemExit):
            repro.parse_args(["--out", str(tmp_path), *argv])
        err = capsys.readouterr().err
        assert message in err and "make repro-premise" in err


@pytest.mark.parametrize("results", ["snip_results.json", "snip_results_draw1.json", "sniper_results.json",
                                     "snip_fpn_results.json", "snip_results_2x.json", "snip_warm_results.json"])
def test_the_reproductions_page_holds_the_committed_results(results):
    repro = common.import_script(os.path.join(EXAMPLES, "snip", "reproduce.py"), "snip_reproduce_page")
    doc = json.load(open(os.path.join(HERE, "..", "..", "docs", "_static", results)))
    page = open(os.path.join(HERE, "..", "..", "docs", "reproductions.rst")).read()
    assert repro.table(doc) in page  # the tables as reproduce.py generates them from the JSON, verbatim


def test_the_reproductions_page_holds_table_2_1_on_both_draws_side_by_side():
    repro = common.import_script(os.path.join(EXAMPLES, "snip", "reproduce.py"), "snip_reproduce_page2")
    docs = [json.load(open(os.path.join(HERE, "..", "..", "docs", "_static", f)))
            for f in ("snip_results.json", "snip_results_draw1.json")]
    assert [d.get("draws", [0]) for d in docs] == [[0], [1]]
    page = open(os.path.join(HERE, "..", "..", "docs", "reproductions.rst")).read()
    assert repro.replication_table(docs) in page


def test_a_seeded_sniper_run_repeats_exactly_whatever_the_hash_seed(tmp_path):
    """Issue 23: a default run printed two APs on two clones. Two processes with different
    PYTHONHASHSEED (set and dict orders of strings differ) must generate the same data and make
    the same losses at every step, at a fixed thread count (runs with 1 and 2 threads differ
    in float summation order, so the reproductions pin --threads 1)."""
    import subprocess

    logs = []
    for h in ("1", "2"):
        out = tmp_path / f"r{h}"
        subprocess.run([sys.executable, os.path.join(EXAMPLES, "sniper", "train.py"), "--out", str(out),
                        "--synthetic-dir", str(tmp_path / f"data{h}"), "--rpn-epochs", "1", "--epochs", "1",
                        "--draw", "0", *TINY], env={**os.environ, "PYTHONHASHSEED": h}, check=True,
                       capture_output=True)
        logs.append([json.loads(line) for line in open(out / "log.jsonl")])
    assert len(logs[0]) >= 4 and logs[0] == logs[1]
    for name in ("train", "val"):
        a, b = (json.load(open(tmp_path / f"data{h}" / name / "annotations.json")) for h in ("1", "2"))
        assert a == b


def test_the_warm_table_runs_snip_with_and_without_its_warm_start(tmp_path, monkeypatch):
    # issue 23: "SNIP warm-starts as MST as the thesis does, with one arm without the warm start"
    repro = common.import_script(os.path.join(EXAMPLES, "snip", "reproduce.py"), "snip_reproduce_warm")
    _cnn_b_checkpoint(tmp_path / "cnn_b.pt")
    args = repro.parse_args(["--init", str(tmp_path / "cnn_b.pt"), "--out", str(tmp_path), "--table", "warm",
                             "--warm-start-epochs", "3"])
    assert args.arms == ["snip", "snip_nowarm"]
    cmds = {}
    monkeypatch.setattr(repro.common, "run_once", lambda cmd, out, log, label: cmds.setdefault(label, cmd))
    for arm, flags, pretrained in repro.WARM_ARMS:
        repro.run_arm(args, arm, flags, pretrained, seed=0)
    for label, epochs in (("snip, seed 0", "3"), ("snip_nowarm, seed 0", "0")):
        cmd = cmds[label]
        i = cmd.index("--warm-start-epochs")
        assert cmd[i + 1] == epochs and cmd.count("--warm-start-epochs") == 1, cmd
        assert cmd[cmd.index("--init") + 1] == str(tmp_path / "cnn_b.pt")
    assert ("snip", "snip_nowarm") in repro.COMPARISONS
