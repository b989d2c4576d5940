"""SUMMARY.md for ``benchmarks/gpu_check.sh``: one page from the step logs.

``python benchmarks/_gpu_check.py LOGS OUT`` reads what the script left in LOGS
(``steps.tsv``, ``env.json``, pytest's JUnit XML, compute-sanitizer logs, the
benchmarks' JSON rows, the example runs' output folders) and writes
``OUT/SUMMARY.md`` and ``OUT/summary.json``. The script calls it after every
step, so that a run cut short still leaves a summary of what it did. Standard
library only (no torch import): it must work whatever the build did.

``python benchmarks/_gpu_check.py --example-rate NAME OUTDIR LOG`` prints the
training throughput of one example run (used by the script, too).
"""

from __future__ import annotations

import glob
import json
import os
import re
import sys
import xml.etree.ElementTree as ET

# Issue 25's targets, each against the benchmark row it is read from:
# (what, table substring, case regex, kind, bound). kind "ratio>=": peer/ours at
# least bound; "ms<=": our time at most bound milliseconds.
TARGETS = [
    ("nms 30k uniform >= 4x torchvision", "nms(iou_threshold=0.5)", r"^nms uniform n=30000 ", "ratio>=", 4.0),
    ("nms 30k clustered >= 4x torchvision", "nms(iou_threshold=0.5)", r"^nms clustered n=30000 ", "ratio>=", 4.0),
    ("batched_nms 30k >= 4x torchvision", "nms(iou_threshold=0.5)", r"^batched_nms clustered n=30000", "ratio>=", 4.0),
    ("batched_soft_nms Gaussian 30k/80 classes <= 5 ms", "soft_nms / batched_soft_nms on CUDA",
     r"^batched_soft_nms gaussian fp32 n=30000, 80 classes", "ms<=", 5.0),
    ("ps_roi_align f+b COCO head >= 1.5x torchvision", "ps_roi_align / ps_roi_pool", r"^ps_roi_align f\+b\s+COCO",
     "ratio>=", 1.5),
    ("deform_conv2d res5 f+b within 2.5x of dense conv2d", "deform_conv2d (3x3) vs",
     r"^res5 .* f\+b\s+vs dense conv2d", "ratio>=", 1 / 2.5),
    ("deform_conv2d res4 f+b within 2.5x of dense conv2d", "deform_conv2d (3x3) vs",
     r"^res4 .* f\+b\s+vs dense conv2d", "ratio>=", 1 / 2.5),
    ("deform_conv2d res5 f+b >= 2x torchvision", "deform_conv2d (3x3) vs", r"^res5 .* f\+b\s+vs torchvision",
     "ratio>=", 2.0),
    ("deform_conv2d res4 f+b >= 2x torchvision", "deform_conv2d (3x3) vs", r"^res4 .* f\+b\s+vs torchvision",
     "ratio>=", 2.0),
]

# The progress line of examples/common.py's Progress: "<desc> [###...] 12/40 3.10 it/s ...".
PROGRESS = re.compile(r"^(?P<desc>.*?epoch \d+/\d+) \[[#.]*\] (?P<i>\d+)/(?P<n>\d+) (?P<rate>[\d.]+) it/s", re.M)


def _read(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def steps(logs: str) -> list[dict]:
    rows = []
    for line in _read(os.path.join(logs, "steps.tsv")).splitlines():
        name, status, seconds, note = (line.split("\t") + ["", "", "", ""])[:4]
        rows.append({"step": name, "status": status, "seconds": seconds, "note": note})
    return rows


def junit_counts(path: str) -> dict | None:
    """passed / skipped / failed / errors of one JUnit XML file (None if absent or unreadable)."""
    if not os.path.exists(path):
        return None
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError:
        return None
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    total = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "skipped", "failures", "errors")}
    failed = [f"{c.get('classname')}::{c.get('name')}" for c in root.iter("testcase")
              if c.find("failure") is not None or c.find("error") is not None]
    return {"passed": total["tests"] - total["skipped"] - total["failures"] - total["errors"],
            "skipped": total["skipped"], "failed": total["failures"], "errors": total["errors"],
            "failed_tests": failed}


def sanitizer_summary(path: str) -> str | None:
    """compute-sanitizer's closing line ("ERROR SUMMARY: 0 errors", "RACECHECK SUMMARY: ...")."""
    text = _read(path)
    if not text:
        return None
    found = re.findall(r"=+ ((?:ERROR|RACECHECK) SUMMARY: .*)", text)
    return "; ".join(found) if found else "no summary line (cut short?)"


def bench_rows(logs: str) -> list[dict]:
    rows = []
    for path in sorted(glob.glob(os.path.join(logs, "bench-*.json"))):
        try:
            with open(path) as f:
                rows += json.load(f)["rows"]
        except (OSError, ValueError, KeyError):
            continue
    return rows


def _fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1e3:.3f} ms" if seconds < 1 else f"{seconds:.3f} s"


def targets(rows: list[dict]) -> list[dict]:
    out = []
    for what, table, case, kind, bound in TARGETS:
        row = next((r for r in rows if table in r.get("table", "") and re.search(case, r.get("case", ""))
                    and r.get("device") == "cuda" and "error" not in r), None)
        if row is None:
            out.append({"target": what, "measured": "not measured", "verdict": "-"})
            continue
        if kind == "ratio>=":
            ok = row["ratio"] is not None and row["ratio"] >= bound
            measured = f"{row['ratio']:.2f}x ({_fmt_s(row['ours_s'])} vs {_fmt_s(row['peer_s'])})"
        else:
            ok = row["ours_s"] * 1e3 <= bound
            measured = _fmt_s(row["ours_s"])
        out.append({"target": what, "measured": measured, "verdict": "met" if ok else "MISSED"})
    for r in rows:
        if r.get("table") == "determinism" and "scalekit" in r.get("case", ""):
            out.append({"target": "ps_roi_align backward deterministic (CUDA)",
                        "measured": "deterministic" if r["deterministic"] else "not deterministic",
                        "verdict": "met" if r["deterministic"] else "MISSED"})
    return out


def example_rate(name: str, out_dir: str, log: str) -> dict:
    """Training throughput of one example run: from its results.json where it
    reports one, else from the last training progress line of its log."""
    results = {}
    try:
        with open(os.path.join(out_dir, "results.json")) as f:
            results = json.load(f)
    except (OSError, ValueError):
        pass
    if isinstance(results.get("train_inputs_per_s"), (int, float)):  # snip_sniper: images or chips per second
        return {"rate": results["train_inputs_per_s"], "unit": "inputs/s", "source": "results.json"}
    args = results.get("args", {}) if isinstance(results.get("args"), dict) else {}
    seconds = results.get("train_seconds")
    if isinstance(seconds, (int, float)) and seconds > 0 and "batch_size" in args:  # rfcn3000
        steps = 0
        for line in _read(os.path.join(out_dir, "log.jsonl")).splitlines():
            try:
                steps = max(steps, int(json.loads(line).get("iter", 0)))
            except (ValueError, AttributeError):
                continue
        if steps:
            return {"rate": steps * args["batch_size"] / seconds, "unit": "images/s", "source": "results.json"}
    matches = [m for m in PROGRESS.finditer(_read(log).replace("\r", "\n"))
               if not m.group("desc").startswith(("proposals", "evaluate", "inference", "classifier"))]
    if matches:
        m = matches[-1]
        batch = re.search(r"--batch(?:-size)? (\d+)", _read(log + ".cmd"))
        rate = float(m.group("rate"))
        if batch:
            return {"rate": rate * int(batch.group(1)), "unit": f"samples/s ({m.group('desc')})", "source": "log"}
        return {"rate": rate, "unit": f"it/s ({m.group('desc')})", "source": "log"}
    return {"rate": None, "unit": "", "source": "none"}


def write(logs: str, out: str) -> dict:
    env = {}
    try:
        with open(os.path.join(logs, "env.json")) as f:
            env = json.load(f)
    except (OSError, ValueError):
        pass
    summary = {"env": env, "steps": steps(logs), "tests": {}, "sanitizers": {}, "examples": {}}
    order = [s["step"] for s in summary["steps"]]
    for path in sorted(glob.glob(os.path.join(logs, "*.xml")),  # in the order the steps ran
                       key=lambda p: (order.index(os.path.basename(p)[:-4]) if os.path.basename(p)[:-4] in order
                                      else len(order), p)):
        summary["tests"][os.path.basename(path)[:-4]] = junit_counts(path)
    for path in sorted(glob.glob(os.path.join(logs, "*.sanitizer.log"))):
        summary["sanitizers"][os.path.basename(path)[: -len(".sanitizer.log")]] = sanitizer_summary(path)
    for path in sorted(glob.glob(os.path.join(logs, "example-*.rate.json"))):
        try:
            with open(path) as f:
                summary["examples"][os.path.basename(path)[len("example-"): -len(".rate.json")]] = json.load(f)
        except (OSError, ValueError):
            continue
    rows = bench_rows(logs)
    summary["bench"] = rows
    summary["targets"] = targets(rows)

    lines = ["# scalekit GPU check", ""]
    if env:
        lines.append(f"GPU: {env.get('gpu', '?')} (sm_{env.get('capability', '?')}), driver {env.get('driver', '?')}; "
                     f"torch {env.get('torch', '?')} (CUDA {env.get('torch_cuda', '?')}), torchvision "
                     f"{env.get('torchvision', '?')}, nvcc {env.get('nvcc', '?')}; commit {env.get('commit', '?')}; "
                     f"{env.get('mode', '')}")
        missing = [k for k, v in env.get("packages", {}).items() if not v]
        if missing:
            lines.append(f"Python packages missing: {', '.join(missing)}")
        lines.append("")
    lines += ["## Steps", "", "| step | status | seconds | note |", "| --- | --- | --- | --- |"]
    lines += [f"| {s['step']} | {s['status']} | {s['seconds']} | {s['note']} |" for s in summary["steps"]]
    lines += ["", "## Tests (passed / skipped / failed / errors)", ""]
    for name, c in summary["tests"].items():
        if c is None:
            lines.append(f"- {name}: no readable JUnit XML")
            continue
        lines.append(f"- {name}: {c['passed']} / {c['skipped']} / {c['failed']} / {c['errors']}")
        lines += [f"  - failed: `{t}`" for t in c["failed_tests"][:15]]
        if len(c["failed_tests"]) > 15:
            lines.append(f"  - ... and {len(c['failed_tests']) - 15} more (see the log)")
    if summary["sanitizers"]:
        lines += ["", "## compute-sanitizer", ""]
        lines += [f"- {name}: {text}" for name, text in summary["sanitizers"].items()]
    if summary["targets"]:
        lines += ["", "## Targets (issue 25)", "", "| target | measured | verdict |", "| --- | --- | --- |"]
        lines += [f"| {t['target']} | {t['measured']} | {t['verdict']} |" for t in summary["targets"]]
    if rows:
        lines += ["", "## Benchmarks (CUDA rows; ratio = peer / scalekit, above 1: scalekit faster)"]
        table = None
        for r in rows:
            if r.get("table") == "determinism":
                continue
            if r.get("table") != table:
                table = r.get("table")
                lines += ["", f"{table}", "", "| case | scalekit | peer | ratio |", "| --- | --- | --- | --- |"]
            if "error" in r:
                lines.append(f"| {r['case']} | failed: {r['error'][:100]} | | |")
                continue
            ratio = f"{r['ratio']:.2f}x" if r.get("ratio") is not None else "-"
            lines.append(f"| {r['case']} | {_fmt_s(r['ours_s'])} | {_fmt_s(r['peer_s'])} | {ratio} |")
    if summary["examples"]:
        lines += ["", "## Example training throughput", "", "| run | throughput | from |", "| --- | --- | --- |"]
        for name, r in summary["examples"].items():
            rate = f"{r['rate']:.1f} {r['unit']}" if r.get("rate") is not None else "not measured"
            lines.append(f"| {name} | {rate} | {r.get('source', '')} |")
    profile = _read(os.path.join(logs, "profile.md")).strip()
    if profile:  # the profile step's page (benchmarks/gpu_profile.py), as it wrote it
        lines += ["", profile]
    lines += ["", "Logs: every step's full output is in the logs folder (or logs.tar.gz) beside this file."]
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "SUMMARY.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    return summary


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--example-rate":
        print(json.dumps(example_rate(*sys.argv[2:])))
    elif len(sys.argv) == 3:
        write(*sys.argv[1:])
    else:
        sys.exit(__doc__)
