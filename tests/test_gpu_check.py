"""benchmarks/gpu_check.sh runs only where a GPU is lent, rarely and for minutes: its shell
logic is checked here on the CPU, so that a broken script does not spend a GPU session."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "gpu_check.sh")


def test_the_script_parses():
    subprocess.run(["bash", "-n", SCRIPT], check=True)


def test_a_dry_run_of_its_first_steps_records_them_and_writes_the_summary(tmp_path):
    env = dict(os.environ, OUT=str(tmp_path / "out"), GPU_CHECK_LOGS=str(tmp_path / "logs"),
               GPU_CHECK_PYTHON=sys.executable)
    run = subprocess.run(["bash", SCRIPT, "--cpu-dry-run", "--only", "env,build"], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    steps = [line.split("\t")[:2] for line in (tmp_path / "logs" / "steps.tsv").read_text().splitlines()]
    assert steps == [["env", "ok"], ["build", "ok"]], steps
    summary = (tmp_path / "out" / "SUMMARY.md").read_text()
    assert "| env | ok |" in summary and "| build | ok |" in summary
    assert "cpu dry run" in summary


def test_a_dry_run_of_the_profile_step_puts_its_page_into_the_summary(tmp_path):
    env = dict(os.environ, OUT=str(tmp_path / "out"), GPU_CHECK_LOGS=str(tmp_path / "logs"),
               GPU_CHECK_PYTHON=sys.executable, OMP_NUM_THREADS="1")
    run = subprocess.run(["bash", SCRIPT, "--cpu-dry-run", "--only", "profile"], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    summary = (tmp_path / "out" / "SUMMARY.md").read_text()
    assert "| profile | ok |" in summary, summary
    # every case profiled, none failing: a case's error would be its operator row
    for case in ("ps_roi_align f+b COCO head / scalekit", "batched_soft_nms gaussian 3000/80 / scalekit",
                 "nms uniform 3000 / torchvision", "deform_conv2d res5 f+b fp32 / torchvision"):
        assert f"| {case} |" in summary, case
    assert "error:" not in summary
