"""scalekit against the official tools' own numbers (ActivityNet's eval_detection.py,
THUMOS14's 2014 and updated MATLAB kits under GNU Octave), committed in
tests/evaluation/official/ by its generate.py."""

import json
import os
import warnings

import numpy as np
import pytest

from scalekit.evaluation import read_activitynet, read_thumos14, tiou_map

HERE = os.path.join(os.path.dirname(__file__), "official")
ANET = json.load(open(os.path.join(HERE, "anet.json")))["cases"]
THUMOS = json.load(open(os.path.join(HERE, "thumos14.json")))["cases"]


@pytest.mark.parametrize("case", ANET, ids=[c["name"] for c in ANET])
def test_activitynet_protocol_equals_official_tool(case):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gt, det, ids = read_activitynet({"database": case["database"]}, {"results": case["results"]})
    expected = case["expected"]
    kwargs = {"negative_starts": "keep"}  # as the official tools
    if case.get("refused"):
        with pytest.raises(ValueError, match="zero length"):
            tiou_map(det, gt, classes=ids, **kwargs)
        return
    r = tiou_map(det, gt, classes=ids, **kwargs)
    assert r["thresholds"] == expected["thresholds"]  # the linspace grid, 0.8999999999999999 included
    assert set(r["per_class"]) == set(expected["per_class"])
    for name, aps in expected["per_class"].items():
        np.testing.assert_allclose(r["per_class"][name], aps, rtol=0, atol=1e-12, err_msg=name)
    assert abs(r["mAP"] - expected["average_mAP"]) <= 1e-12


def test_activitynet_edge_cases_are_the_ones_the_issue_names():
    by_name = {c["name"]: c for c in ANET}
    assert by_name["unknown-video-minimal"]["expected"]["per_class"]["Long jump"][0] == pytest.approx(1 / 6)
    assert np.linspace(0.5, 0.95, 10)[8] <= by_name["threshold-0.8999999999999999"]["tiou"] < 0.9
    assert by_name["zero-length-nan"]["expected"]["average_mAP"] == 1.0  # the tool's NaN match


def _thumos_files(case, tmp_path):
    (tmp_path / "detclasslist.txt").write_text(
        "7 BaseballPitch\n9 BasketballDunk\n12 Billiards\n21 CleanAndJerk\n22 CliffDiving\n")
    for name, lines in case["gt"].items():
        (tmp_path / f"{name}_test.txt").write_text("".join(line + "\n" for line in lines))
    (tmp_path / "Ambiguous_test.txt").write_text("".join(line + "\n" for line in case["ambiguous"]))
    (tmp_path / "det.txt").write_text("".join(line + "\n" for line in case["det"]))
    return read_thumos14(tmp_path, tmp_path / "det.txt", subset="test")


@pytest.mark.parametrize("case", THUMOS, ids=[c["name"] for c in THUMOS])
def test_thumos14_protocol_equals_official_kits(case, tmp_path):
    gt, det, ids, amb = _thumos_files(case, tmp_path)
    kwargs = {"negative_starts": "keep"}  # as the official tools
    if case.get("refused"):
        with pytest.raises(ValueError, match="start > end"):
            tiou_map(det, gt, protocol="thumos14", ambiguous=amb, classes=ids, **kwargs)
        return
    for kit, ap in (("updated", "non_interpolated"), ("2014", "11_point")):
        for row in case["expected"].get(kit, []):
            r = tiou_map(det, gt, protocol="thumos14", thresholds=[row["threshold"]], ap=ap, ambiguous=amb,
                         classes=ids, **kwargs)
            for name, expected in row["per_class"].items():
                assert abs(r["per_class"][name][0] - expected) <= 1e-12, (kit, row["threshold"], name)
            assert abs(r["mAP"] - np.mean(list(row["per_class"].values()))) <= 1e-12


def test_thumos14_kits_agree_with_the_issue():
    by_name = {c["name"]: c for c in THUMOS}
    assert by_name["ground-truth-side-minimal"]["expected"]["updated"][4]["per_class"]["BaseballPitch"] == 0.5
    exact = by_name["exact-threshold-0.5"]["expected"]["updated"]
    assert [row["per_class"]["BaseballPitch"] for row in exact if row["threshold"] in (0.4, 0.5)] == [1.0, 0.0]
    # the 2014 kit's .1:.1:.5 under Octave: 0.1 + 2 * 0.1
    assert [row["threshold"] for row in by_name["seeded-0"]["expected"]["2014"]][2] == 0.30000000000000004
