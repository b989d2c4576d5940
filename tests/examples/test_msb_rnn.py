"""The MSB-RNN example end to end on a tiny synthetic video set (CI: well under a minute)."""

import json
import os
import sys

import pytest
import torch

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "examples")
sys.path.insert(0, EXAMPLES)
import common  # noqa: E402

msb_rnn = common.import_script(os.path.join(EXAMPLES, "msb_rnn", "msb_rnn.py"), "msb_rnn_driver")

TINY = ["--videos", "2", "--val-videos", "1", "--test-videos", "1", "--videos-per-subject", "1", "--chunks", "12", "--size", "48", "64", "--stream-epochs", "1",
        "--lstm-epochs", "1", "--window", "5", "--ablations"]


def test_end_to_end_caches_and_resumes(tmp_path, capsys):
    out = str(tmp_path / "run")
    summary = msb_rnn.main(TINY + ["--out", out])
    results = summary["results"]
    for tag in ("forward", "backward", "bidirectional"):
        assert 0.0 <= results["msb_rnn"][tag]["midpoint_map"] <= 1.0
        assert 0.0 <= results["msb_rnn"][tag]["tiou_map@0.5"] <= 1.0
    for key in ("stream_crop_traj", "stream_frame_stack", "lstm_crop_stack", "two_stream", "msb_rnn_trimmed"):
        assert key in results
    assert "forward_k4" in results["lstm_crop_traj"]
    # Uni-directional LSTMs trained as their own models: one read-out each, the other direction absent.
    assert set(results["lstm_forward"]) == {"forward", "selection", *(f"forward_k{k}" for k in msb_rnn.MEMORY_KS)}
    assert set(results["lstm_backward"]) == {"backward", "selection"}
    # Validation (a subject of its own) picked the epoch: the best of its curve.
    sel = results["msb_rnn"]["selection"]
    assert sel["curve"] and sel["val"] == max(v for _, v in sel["curve"])
    assert sel["epoch"] == next(e for e, v in sel["curve"] if v == sel["val"])
    with open(os.path.join(out, "data", "split.json")) as f, open(os.path.join(out, "data", "subjects.json")) as g:
        split, subjects = json.load(f), json.load(g)
    assert {p: [subjects[v] for v in split[p]] for p in ("train", "val", "test")} == {"train": [0, 1], "val": [2],
                                                                                      "test": [3]}
    assert os.path.exists(os.path.join(out, "seed0", "plots", "stream_crop_traj.png"))
    features = os.path.join(out, "seed0", "streams", "crop_traj.pt")
    stamp = os.path.getmtime(features)
    capsys.readouterr()

    again = msb_rnn.main(TINY + ["--out", out])  # every stage cached: nothing recomputed
    log = capsys.readouterr().err
    assert "motion: cached" in log and "streams (crop_traj): cached" in log and "sequence (msb_rnn): cached" in log
    assert "epoch" not in log  # no training ran
    assert os.path.getmtime(features) == stamp
    assert again["results"]["msb_rnn"] == results["msb_rnn"]

    longer = TINY[:]
    longer[longer.index("--stream-epochs") + 1] = "2"
    msb_rnn.main(longer + ["--out", out, "--resume"])  # one more epoch per stream, from the checkpoints
    log = capsys.readouterr().err
    assert "stream_crop_traj: resumed from" in log and "(epoch 1)" in log
    assert "motion: cached" in log and "stream_crop_traj epoch 1/2" not in log
    ckpt = torch.load(os.path.join(out, "seed0", "checkpoints", "stream_crop_traj.pt"), weights_only=True)
    assert ckpt["epoch"] == 1
    assert os.path.getmtime(features) > stamp  # features re-extracted with the longer-trained stream

    # The synthetic set was written in the real-data layout: --data reads it back.
    other = msb_rnn.main(TINY + ["--out", str(tmp_path / "real"), "--data", os.path.join(out, "data")])
    assert other["results"]["msb_rnn"]["bidirectional"]["midpoint_map"] >= 0.0


def test_bad_arguments_fail_with_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit):
        msb_rnn.main(["--out", str(tmp_path), "--chunks", "0"])
    assert "--chunks must be >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        msb_rnn.main(["--out", str(tmp_path), "--data", str(tmp_path / "nowhere")])
    assert "annotations.json is missing" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        msb_rnn.main(["--out", str(tmp_path), "--box", "80", "80", "--size", "48", "64"])
    assert "--box" in capsys.readouterr().err
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            msb_rnn.main(TINY + ["--out", str(tmp_path / "cuda"), "--device", "cuda"])
        assert "no CUDA device" in capsys.readouterr().err


def test_docs_page_holds_the_committed_results():
    """docs/reproductions_msb_rnn.rst shows exactly the tables that ``make repro-msb-rnn``'s JSON gives."""
    report = common.import_script(os.path.join(EXAMPLES, "msb_rnn", "report.py"), "msb_rnn_report")
    docs = os.path.join(EXAMPLES, "..", "docs")
    with open(os.path.join(docs, "_static", "msb_rnn_results.json")) as f:
        doc = json.load(f)
    with open(os.path.join(docs, "reproductions_msb_rnn.rst")) as f:
        page = f.read()
    blocks = report.build_tables(doc)
    assert set(blocks) >= {"5.2", "5.3", "5.4", "5.7", "5.4.3", "lengths", "entropy", "flow", "epochs"}
    missing = [name for name, block in blocks.items() if block not in page]
    assert not missing, f"the page's blocks {missing} differ from docs/_static/msb_rnn_results.json"
    assert len(doc["seeds"]) >= 5 and doc["command"] == "make repro-msb-rnn"
    # The verdicts follow from the intervals; the split is by subject.
    for c in doc["comparisons"].values():
        assert c["holds"] == ("a>b" if c["low"] > 0 else "a<b" if c["high"] < 0 else None)
    subjects = [set(doc["splits"][p]["subjects"]) for p in ("train", "val", "test")]
    assert not (subjects[0] & subjects[1] or subjects[0] & subjects[2] or subjects[1] & subjects[2])
