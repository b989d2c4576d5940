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


def test_read_activitynet_keeps_and_says_in_one_line():
    gt_json = {"database": {"v1": {"subset": "validation", "annotations": [{"segment": [0, 10], "label": "a"}]},
                            "t1": {"subset": "testing", "annotations": [{"segment": [0, 10], "label": "a"}]}}}
    res = {"results": {"v1": [{"segment": [0, 10], "label": "a", "score": 0.5},
                              {"segment": [0, 10], "label": "zzz", "score": 0.4}],
                       "t1": [{"segment": [0, 10], "label": "a", "score": 0.9}]}}
    with pytest.warns(UserWarning) as record:
        gt, det, ids = read_activitynet(gt_json, res)
    assert len(record) == 1 and "\n" not in str(record[0].message)
    assert "1 predictions on 1 videos not in the 'validation' ground truth kept" in str(record[0].message)
    assert ids == {"a": 0, "zzz": 1} and set(det) == {"v1", "t1"}
    r = tiou_map(det, gt, classes=ids)
    assert r["per_class"]["a"][0] == 0.5 and r["ignored_classes"] == ["zzz"] and r["unknown_videos"] == ["t1"]


def test_read_thumos14_bad_input(tmp_path):
    (tmp_path / "detclasslist.txt").write_text("7 BaseballPitch\n")
    (tmp_path / "BaseballPitch_test.txt").write_text("v1 0 10\n")
    (tmp_path / "Ambiguous_test.txt").write_text("v1 3\n")
    with pytest.raises(ValueError, match=r"Ambiguous_test.txt:1: 3 fields expected"):
        read_thumos14(tmp_path)
    (tmp_path / "Ambiguous_test.txt").write_text("")
    (tmp_path / "det.txt").write_text("v1 0 10 8 0.5\n")
    with pytest.raises(ValueError, match="class id 8 is not in detclasslist.txt"):
        read_thumos14(tmp_path, tmp_path / "det.txt")
    with pytest.raises(FileNotFoundError, match="Billiards"):
        (tmp_path / "detclasslist.txt").write_text("7 BaseballPitch\n12 Billiards\n")
        read_thumos14(tmp_path)


def test_negative_starts_and_ambiguous_arguments():
    gt = {"v": {"labels": [0], "segments": [[0.0, 10.0]]}}
    det = {"v": {"labels": [0], "segments": [[-2.0, 10.0]], "scores": [0.9]}}
    with pytest.raises(ValueError, match="negative_starts='clip'"):
        tiou_map(det, gt)
    assert tiou_map(det, gt, negative_starts="clip", thresholds=(0.99,))["mAP"] == 1.0
    assert tiou_map(det, gt, negative_starts="keep", thresholds=(0.99,))["mAP"] == 0.0  # 10 / 12
    with pytest.raises(ValueError, match="protocol='thumos14' only"):
        tiou_map(det, gt, ambiguous={"v": [[0.0, 1.0]]}, negative_starts="keep")
    with pytest.raises(ValueError, match="protocol must be one of"):
        tiou_map(det, gt, protocol="thumos")


@pytest.mark.parametrize("case", [c for c in ANET if not c.get("refused")], ids=lambda c: c["name"])
def test_activitynet_official_numbers_when_matched_in_pieces_of_one_pair(case, monkeypatch):
    # the memory bound (issue 27) matches a few pairs at a time: the smallest pieces give the same numbers
    from scalekit.evaluation import _match

    monkeypatch.setattr(_match, "PAIR_BUDGET", 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gt, det, ids = read_activitynet({"database": case["database"]}, {"results": case["results"]})
    r = tiou_map(det, gt, classes=ids, negative_starts="keep")
    for name, aps in case["expected"]["per_class"].items():
        np.testing.assert_allclose(r["per_class"][name], aps, rtol=0, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("case", [c for c in THUMOS if not c.get("refused")], ids=lambda c: c["name"])
def test_thumos14_official_numbers_when_matched_in_pieces_of_one_pair(case, tmp_path, monkeypatch):
    from scalekit.evaluation import _match

    monkeypatch.setattr(_match, "PAIR_BUDGET", 1)
    gt, det, ids, amb = _thumos_files(case, tmp_path)
    for row in case["expected"].get("updated", []):
        r = tiou_map(det, gt, protocol="thumos14", thresholds=[row["threshold"]], ambiguous=amb, classes=ids,
                     negative_starts="keep")
        for name, expected in row["per_class"].items():
            assert abs(r["per_class"][name][0] - expected) <= 1e-12, (row["threshold"], name)
