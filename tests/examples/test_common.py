"""examples/common.py: the training-script toolkit every example uses."""

import io
import json
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "examples"))
import common  # noqa: E402


def test_checkpoint_resumes_model_optimizer_and_rng(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.rand(4, 3)).sum().backward()
    opt.step()
    common.save_checkpoint(str(tmp_path / "ck.pt"), model=model, optimizer=opt, epoch=3, best=0.5)
    expected_next = torch.rand(1)
    other = torch.nn.Linear(3, 2)
    other_opt = torch.optim.Adam(other.parameters(), lr=0.1)
    state = common.load_checkpoint(str(tmp_path / "ck.pt"), model=other, optimizer=other_opt)
    assert state == {"epoch": 3, "extra": {"best": 0.5}}
    assert torch.equal(other.weight, model.weight) and other_opt.state_dict()["state"][0]["step"] == 1
    assert torch.equal(torch.rand(1), expected_next)  # the random stream continues where it was saved


def test_bad_resume_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        common.load_checkpoint(str(tmp_path / "none.pt"), model=torch.nn.Linear(1, 1))
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(SystemExit):
        common.load_checkpoint(str(tmp_path / "junk.pt"), model=torch.nn.Linear(1, 1))
    err = capsys.readouterr().err
    assert "no checkpoint at" in err and "is not a checkpoint this script wrote" in err


def test_progress_log_and_plot(tmp_path):
    out = io.StringIO()
    bar = common.Progress(range(4), desc="epoch 0", every=0.0, stream=out)
    log = common.JsonlLog(str(tmp_path / "log.jsonl"))
    for i in bar:
        bar.set(loss=1.0 / (i + 1))
        log.write(iter=i, loss=1.0 / (i + 1), loss_box=0.5)
    lines = out.getvalue().splitlines()
    assert "4/4" in lines[-1] and "ETA" in lines[-1] and sum("4/4" in line for line in lines) == 1  # printed once
    assert [json.loads(line)["iter"] for line in open(tmp_path / "log.jsonl")] == [0, 1, 2, 3]
    keys = common.plot_curves(str(tmp_path / "log.jsonl"), str(tmp_path / "loss.png"))
    from PIL import Image

    colours = {tuple(p) for p in torch.from_numpy(__import__("numpy").array(Image.open(tmp_path / "loss.png").convert("RGB"))).reshape(-1, 3).tolist()}
    assert keys == ["loss", "loss_box"] and len(colours) > 3  # lines drawn, not a blank frame
