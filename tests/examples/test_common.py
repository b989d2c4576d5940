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


def test_cached_recomputes_only_when_its_key_changes(tmp_path):
    calls, messages = [], []
    path = str(tmp_path / "sub" / "value.pt")

    def compute():
        calls.append(1)
        return {"x": torch.arange(3) * len(calls)}

    key = common.fingerprint(epochs=3, size=(64, 80))
    assert key == common.fingerprint(size=[64, 80], epochs=3) != common.fingerprint(epochs=4, size=(64, 80))
    first = common.cached(path, key, compute, log=messages.append, name="stage")
    again = common.cached(path, key, compute, log=messages.append, name="stage")
    assert len(calls) == 1 and torch.equal(again["x"], first["x"]) and messages == [f"stage: cached {path}"]
    changed = common.cached(path, common.fingerprint(epochs=4), compute, log=messages.append, name="stage")
    assert len(calls) == 2 and changed["x"].tolist() == [0, 2, 4] and len(messages) == 1
    assert not os.path.exists(path + ".tmp")


def test_train_epochs_checkpoints_every_epoch_and_resumes_after_the_last(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    seen, messages = [], []

    def steps(epoch):
        seen.append(epoch)
        for _ in range(3):
            loss = model(torch.ones(1, 2)).pow(2).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            yield loss.item()

    run = lambda epochs, resume: common.train_epochs("net", model, opt, epochs, steps, folder=str(tmp_path),  # noqa: E731
                                                     resume=resume, log=messages.append)
    assert run(2, False) is model and not model.training and seen == [0, 1]
    ckpt = torch.load(tmp_path / "checkpoints" / "net.pt", weights_only=True)
    assert ckpt["epoch"] == 1 and torch.equal(ckpt["model"]["weight"], model.weight.detach())
    rows = [json.loads(line) for line in open(tmp_path / "logs" / "net.jsonl")]
    assert [r["epoch"] for r in rows if "loss_epoch" in r] == [0, 1] and len(rows) == 8
    run(3, True)  # one more epoch: only epoch 2 runs, the log goes on
    assert seen == [0, 1, 2] and messages == [f"net: resumed from {tmp_path}/checkpoints/net.pt (epoch 2)"]
    assert len(open(tmp_path / "logs" / "net.jsonl").readlines()) == 12
    assert os.path.exists(tmp_path / "plots" / "net.png")
    run(1, False)  # a fresh start replaces the log
    assert len(open(tmp_path / "logs" / "net.jsonl").readlines()) == 4


def test_stage_log_prefixes_and_timestamps(capsys):
    common.stage_log("demo")("motion: cached x")
    err = capsys.readouterr().err
    assert err.startswith("[demo ") and err.endswith("] motion: cached x\n") and len(err.split(":")) == 4


def test_cached_dir_builds_once_per_key_and_not_after_a_failed_build(tmp_path):
    root, builds, messages = str(tmp_path / "data"), [], []

    def build(fail=False):
        builds.append(1)
        os.makedirs(root, exist_ok=True)
        if fail:
            raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        common.cached_dir(root, "k1", lambda: build(fail=True), log=messages.append, name="data")
    assert common.cached_dir(root, "k1", build, log=messages.append, name="data") == root and len(builds) == 2
    common.cached_dir(root, "k1", build, log=messages.append, name="data")
    assert len(builds) == 2 and messages == [f"data: cached {root}"]
    common.cached_dir(root, "k2", build, log=messages.append, name="data")
    assert len(builds) == 3 and open(os.path.join(root, "key.txt")).read() == "k2"


def test_optimizer_step_clips_over_the_optimizers_parameters():
    torch.manual_seed(0)
    model, twin = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    twin.load_state_dict(model.state_dict())
    opt, twin_opt = torch.optim.SGD(model.parameters(), lr=0.5), torch.optim.SGD(twin.parameters(), lr=0.5)
    x = torch.randn(5, 4) * 10
    loss = model(x).pow(2).sum()
    assert common.optimizer_step(opt, loss, clip_norm=1.0) == loss.item()
    twin_opt.zero_grad()
    twin(x).pow(2).sum().backward()
    torch.nn.utils.clip_grad_norm_(twin.parameters(), 1.0)
    twin_opt.step()
    assert torch.equal(model.weight, twin.weight) and torch.equal(model.bias, twin.bias)
    before = model.weight.detach().clone()
    common.optimizer_step(opt, model(x).pow(2).sum())  # unclipped: a far larger step
    assert (model.weight - before).norm() > 10 * 0.5


def test_keep_best_restores_the_best_scored_state():
    model = torch.nn.Linear(1, 1, bias=False)
    scores = iter([0.1, 0.5, 0.5, 0.3])
    keep = common.KeepBest(model, lambda: next(scores), default_epoch=9)
    for epoch in range(4):
        with torch.no_grad():
            model.weight.fill_(float(epoch))
        keep(epoch)
    out = keep.restore()
    assert out["epoch"] == 1 and out["val"] == 0.5  # a tie keeps the earlier epoch
    assert out["curve"] == [[0, 0.1], [1, 0.5], [2, 0.5], [3, 0.3]]
    assert model.weight.item() == 1.0  # the state as it was at that epoch, not the last one
    untouched = torch.nn.Linear(1, 1)
    before = untouched.weight.clone()
    assert common.KeepBest(untouched, lambda: 0.0, default_epoch=9).restore() == {"val": -1.0, "epoch": 9, "curve": []}
    assert torch.equal(untouched.weight, before)
