"""examples/autofocus: trains the focus head with a detector and compares the four inference
modes end to end on tiny data (a few seconds), resumes, and its docs table is the committed JSON's.
The blocks it calls are tested in tests/autofocus, tests/slicing and tests/detection."""

import json
import os
import sys

import pytest
import torch

HERE = os.path.dirname(__file__)
EXAMPLES = os.path.join(HERE, "..", "..", "examples")
DOCS = os.path.join(HERE, "..", "..", "docs")
sys.path.insert(0, EXAMPLES)
import common  # noqa: E402

autofocus = common.import_script(os.path.join(EXAMPLES, "autofocus", "autofocus.py"), "autofocus_example")

TINY = ["--synthetic", "3", "2", "--image-size", "240", "320", "--large-size", "40", "100", "--max-steps", "2",
        "--batch-size", "2", "--slice-size", "128", "--warmup", "1", "--threads", "1"]


def _has_sahi():
    try:
        import sahi.predict  # noqa: F401
    except ImportError:
        return False
    return True


def test_trains_compares_every_mode_and_resumes(tmp_path, capsys):
    out = str(tmp_path / "run")
    # 1,1: no focus probability reaches 1, so no chip: AutoFocus runs the coarsest scale alone
    args = ["--out", out, *TINY, "--thresholds", "0.02,0.2", "1,1"]
    first = autofocus.main([*args, "--epochs", "1"])
    modes = first["modes"]
    expected = ["pyramid"] + (["sahi"] if _has_sahi() else []) + ["sliced", "autofocus_0.02_0.2", "autofocus_1_1"]
    assert list(modes) == expected
    with open(os.path.join(out, "results.json")) as f:
        assert json.load(f)["modes"].keys() == modes.keys()
    for m in modes.values():
        assert -1 <= m["AP"] <= 1 and -1 <= m["APs"] <= 1 and m["megapixels_per_image"] > 0
    # pixels: the pyramid is 0.5^2 + 1 + 2^2 times the image; the coarsest scale alone is 0.25 / 5.25 of it
    assert modes["pyramid"]["megapixels_per_image"] == pytest.approx(240 * 320 * 5.25 / 1e6)
    assert modes["autofocus_1_1"]["pixels_vs_pyramid"] == pytest.approx(0.25 / 5.25)
    assert modes["autofocus_1_1"]["focus_recall"] == 0.0  # no chip holds a small object's centre
    # barely trained, the head says ~0.5 everywhere: 0.02 covers every small object, with at most the pyramid's pixels
    assert modes["autofocus_0.02_0.2"]["focus_recall"] == 1.0
    assert modes["autofocus_1_1"]["pixels_vs_pyramid"] < modes["autofocus_0.02_0.2"]["pixels_vs_pyramid"] <= 1 + 1e-9
    if "sahi" in modes:  # SAHI ran the same grid, full-image pass and merge as sliced_detect, and found as much
        assert modes["sahi"]["megapixels_per_image"] == pytest.approx(modes["sliced"]["megapixels_per_image"])
        assert modes["sahi"]["detections_per_image"] == modes["sliced"]["detections_per_image"] > 0
    assert modes["pyramid"]["focus_recall"] is None
    assert set(first["targets"]) == {"autofocus_0.02_0.2", "autofocus_1_1"}
    assert not first["targets"]["autofocus_1_1"]["vs_pyramid"] or modes["pyramid"]["APs"] <= 0.015
    assert os.path.getsize(os.path.join(out, "focus_chips.png")) > 0
    assert "``autofocus_1_1``" in capsys.readouterr().out  # the table was printed

    ckpt = os.path.join(out, "checkpoints", "autofocus.pt")
    before = torch.load(ckpt, weights_only=True)
    assert before["epoch"] == 0
    autofocus.main([*args, "--epochs", "2", "--resume"])
    assert "resumed from" in capsys.readouterr().err
    after = torch.load(ckpt, weights_only=True)
    assert after["epoch"] == 1  # continued, not restarted
    assert any(not torch.equal(before["model"][k], after["model"][k]) for k in before["model"])
    assert any(k.startswith("focus_head.") for k in after["model"])  # the head trained with the detector


@pytest.mark.parametrize("argv, message", [(["--thresholds", "0.1"], "--thresholds"),
                                           (["--thresholds", "a,b"], "--thresholds"),
                                           (["--epochs", "0"], "--epochs")])
def test_bad_arguments_exit_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        autofocus.parse_args(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err



def test_missing_data_folder_is_named(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        autofocus.main(["--data", str(tmp_path / "none"), "--out", str(tmp_path / "out")])
    assert e.value.code == 2 and "--data: root: no such image folder" in capsys.readouterr().err


def test_the_detector_sees_a_crop_as_the_same_pixels_of_the_whole_image():
    """Crops (slices, chips) and whole images must meet the same network: with the tiny backbone's
    GroupNorm a crop's features differ from the whole image's; after crop_consistent they agree."""
    torch.manual_seed(0)
    image = torch.rand(1, 3, 256, 256)
    image[..., 64:200, 64:200] = 0.9  # content that shifts a per-input normalisation

    def interior_gap(backbone):  # the first stage (two 3x3 convs, stride 2), away from the crop's edges
        backbone.eval()
        with torch.no_grad():
            whole, crop = backbone.stages[0](image), backbone.stages[0](image[..., 96:224, 96:224])
        a, b = whole[..., 48 + 4:112 - 4, 48 + 4:112 - 4], crop[..., 4:-4, 4:-4]
        return float((a - b).abs().max() / a.abs().max())

    before = common.build_detector("tiny", 3, False).backbone
    assert interior_gap(before) > 0.05
    after = common.build_detector("tiny", 3, False).backbone
    autofocus.crop_consistent(after)
    assert not any(isinstance(m, torch.nn.GroupNorm) for m in after.modules())
    assert interior_gap(after) < 1e-4


def test_docs_page_holds_the_committed_results():
    with open(os.path.join(DOCS, "_static", "autofocus_results.json")) as f:
        result = json.load(f)
    with open(os.path.join(DOCS, "guide", "autofocus.rst")) as f:
        page = f.read()
    assert autofocus.table(result) in page and autofocus.verdicts(result) in page
    assert result["targets"] == autofocus.targets(result["modes"])  # the verdicts follow from the figures
