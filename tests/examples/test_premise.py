"""examples/snip/premise.py (thesis §2.3): on tiny data in seconds, an untrained network is
reported at chance, a trained CNN-B is not, identical networks differ by exactly zero, the
checkpoint is a backbone a detector can load, and the docs' table is the committed JSON's."""

import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(__file__)
EXAMPLES = os.path.join(HERE, "..", "..", "examples")
DOCS = os.path.join(HERE, "..", "..", "docs")
sys.path.insert(0, EXAMPLES)
import common  # noqa: E402

premise = common.import_script(os.path.join(EXAMPLES, "snip", "premise.py"), "snip_premise")

TINY = ["--size", "32", "--low", "8", "16", "--test-res", "16", "8", "--test", "90", "--seeds", "0",
        "--bootstrap", "200", "--batch-size", "16"]


def _every_arm(result, renderers):
    assert list(result["renderers"]) == renderers
    for res in result["renderers"].values():
        assert sorted(res["accuracy"]["CNN-B"], key=int) == ["8", "16", "32"]
        assert sorted(res["accuracy"]["CNN-S"], key=int) == sorted(res["accuracy"]["CNN-B-FT"], key=int) == ["8", "16"]
        for arm in res["accuracy"].values():
            for a in arm.values():
                assert 0 <= a["ci"][0] <= a["mean"] <= a["ci"][1] <= 1


def test_untrained_networks_are_at_chance_and_identical_ones_differ_by_zero(tmp_path):
    out = str(tmp_path / "run")
    result = premise.main(["--out", out, *TINY, "--train", "12", "--epochs", "0", "--ft-epochs", "0"])
    _every_arm(result, ["scale_true", "today"])
    with open(os.path.join(out, "results.json")) as f:
        assert json.load(f) == json.loads(json.dumps(result))
    for res in result["renderers"].values():
        assert res["chance"] == round(1 / 3, 4)
        assert not any(a["above_chance"] for arm in res["accuracy"].values() for a in arm.values())
        assert not any(res["order_holds"].values())
        for d in res["differences"].values():  # CNN-B-FT with no fine-tuning step is CNN-B: paired difference 0
            assert d["CNN-B-FT - CNN-B"]["mean"] == 0 and d["CNN-B-FT - CNN-B"]["ci"] == [0, 0]


def test_a_trained_cnn_b_is_above_chance_and_its_checkpoint_is_a_backbone(tmp_path):
    out = str(tmp_path / "run")
    result = premise.main(["--out", out, *TINY, "--renderers", "scale_true", "--train", "240", "--epochs", "4",
                           "--ft-epochs", "1"])
    _every_arm(result, ["scale_true"])
    full = result["renderers"]["scale_true"]["accuracy"]["CNN-B"]["32"]
    assert full["above_chance"] and full["ci"][0] > 1 / 3
    state = torch.load(os.path.join(out, "cnn_b_scale_true_seed0.pt"), weights_only=True)
    net = common.PremiseNet(3)
    net.load_state_dict(state)
    net.eval()  # (in training mode the zeros below would move BatchNorm's running statistics)
    assert net.body.stride == 16 and net.body.out_channels == 64
    assert net.body(torch.zeros(1, 3, 64, 96)).shape == (1, 64, 4, 6)  # a detector's single stride-16 map
    # the checkpoint is the network that was measured: it reproduces the reported full-resolution accuracy
    crops = premise.make_synthetic_scale_crops(90, 2000, size=32, resolutions=(16, 8))
    hits = premise.correct(net, premise.prepare(crops["images"][32], None), crops["labels"])
    assert np.isclose(hits.mean(), full["mean"], atol=1e-4)


def test_bad_resolutions_are_refused(capsys):
    import pytest

    with pytest.raises(SystemExit):
        premise.parse_args(["--size", "64", "--low", "24"])
    assert "each resolution must be size/4 or size/2 (a stem stride of 1 or 2), got 24 for size 64" in capsys.readouterr().err


def test_docs_page_holds_the_committed_results():
    with open(os.path.join(DOCS, "_static", "premise_results.json")) as f:
        result = json.load(f)
    with open(os.path.join(DOCS, "reproductions.rst")) as f:
        page = f.read()
    assert premise.table(result) in page and premise.differences(result) in page
    for res in result["renderers"].values():  # the verdicts follow from the intervals
        for r, d in res["differences"].items():
            assert res["order_holds"][r] == all(e["ci"][0] > 0 for e in d.values())
        assert res["cnn_b_degrades"] == {r: c["ci"][1] < 0 for r, c in res["cnn_b_change"].items()}
