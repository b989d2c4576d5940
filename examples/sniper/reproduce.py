"""The SNIP/SNIPER reproduction table: every recipe on the same data, several seeds.

Runs ``examples/snip/train.py`` (``single``, ``multiscale``, ``snip``) and
``examples/sniper/train.py`` (``sniper``, ``sniper --no-negatives``)
once per seed (each in its own process, in ``OUT/<recipe>_s<seed>``; a run
whose ``results.json`` exists is not run again, so an interrupted reproduction
continues where it stopped), then writes ``OUT/results.json`` (every run, and
mean and spread per recipe) and ``OUT/results.md`` (the Markdown table).
Arguments after ``--`` go to every driver run. ``--jobs N`` runs N seeds
side by side (each seed's runs one after another); give each run one thread
(``-- --threads 1``) on a small machine.

    python examples/sniper/reproduce.py --seeds 0 1 --out runs/repro
    python examples/sniper/reproduce.py --seeds 0 1 --jobs 2 --out runs/repro -- --threads 1
    python examples/sniper/reproduce.py --seeds 0 1 --out runs/repro -- --epochs 4 --synthetic 120 40
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time


HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import common  # noqa: E402
EXAMPLES = os.path.dirname(HERE)
SNIP, SNIPER = os.path.join(EXAMPLES, "snip", "train.py"), os.path.join(HERE, "train.py")
# (name, driver, flags)
RUNS = (("single", SNIP, ["--recipe", "single"]), ("multiscale", SNIP, ["--recipe", "multiscale"]),
        ("snip", SNIP, ["--recipe", "snip"]), ("sniper", SNIPER, []), ("sniper_no_neg", SNIPER, ["--no-negatives"]))
SNIPER_ONLY = ("--rpn-epochs", "--proposals-per-scale")  # flags (with one value) the SNIP driver does not take


def driver_args(driver: str, extra: list[str]) -> list[str]:
    """The arguments after ``--`` that ``driver`` takes: SNIPER's own flags go to SNIPER only."""
    if driver == SNIPER:
        return list(extra)
    out, skip = [], False
    for a in extra:
        if skip:
            skip = False
        elif a in SNIPER_ONLY:
            skip = True
        elif not a.startswith(tuple(f + "=" for f in SNIPER_ONLY)):
            out.append(a)
    return out


METRICS = ("AP", "AP50", "APs", "APm", "APl", "ARs", "ARm", "ARl")


def summarise(runs: list[dict]) -> dict:
    """Per recipe: mean and half the range (max - min) / 2 over seeds of every figure."""
    out = {}
    for name, _, _ in RUNS:
        rs = [r for r in runs if r["recipe"] == name]
        if not rs:
            continue
        row = {"seeds": [r["seed"] for r in rs]}
        figures = {**{m: [r["coco"][m] for r in rs] for m in METRICS},
                   "train_pixels_per_image": [r["train_pixels_per_image"] for r in rs],
                   "train_inputs_per_s": [r["train_inputs_per_s"] for r in rs],
                   "train_seconds": [r["train_seconds"] + r.get("rpn_seconds", 0.0) for r in rs],
                   "inference_s_per_image": [r["inference_s_per_image"] for r in rs]}
        row.update({k: common.seed_stat(v) for k, v in figures.items()})
        out[name] = row
    if "single" in out:
        base = out["single"]["train_pixels_per_image"]["mean"]
        for row in out.values():
            row["pixels_vs_single"] = row["train_pixels_per_image"]["mean"] / base
    return out


def table(summary: dict) -> str:
    def f(row, k, scale=100.0, digits=1):
        return common.mean_spread(row[k], scale, digits)

    lines = ["| recipe | AP | AP50 | AP_S | AP_M | AP_L | AR_S | AR_M | AR_L | train pixels vs single | "
             "train inputs/s | train s | inference s/image |",
             "|---|" + "---|" * 12]
    for name, row in summary.items():
        lines.append(f"| {name} | {f(row, 'AP')} | {f(row, 'AP50')} | {f(row, 'APs')} | {f(row, 'APm')} | "
                     f"{f(row, 'APl')} | {f(row, 'ARs')} | {f(row, 'ARm')} | {f(row, 'ARl')} | "
                     f"{row.get('pixels_vs_single', float('nan')):.2f}x | {f(row, 'train_inputs_per_s', 1, 2)} | "
                     f"{f(row, 'train_seconds', 1, 0)} | {f(row, 'inference_s_per_image', 1, 3)} |")
    return "\n".join(lines) + "\n\nAP/AR in %, mean ± half the range over seeds.\n"


def main(argv=None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    argv, extra = common.split_passthrough(argv)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog="\n".join(__doc__.splitlines()[2:]),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="seeds (default: %(default)s)")
    p.add_argument("--out", default="runs/repro", help="output folder (default: %(default)s)")
    p.add_argument("--jobs", type=int, default=1, help="seeds run side by side (default: %(default)s)")
    p.add_argument("--recipes", nargs="+", default=[n for n, _, _ in RUNS], choices=[n for n, _, _ in RUNS],
                   help="recipes to run (default: all)")
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    start = time.perf_counter()
    data = os.path.join(args.out, "data")
    q = argparse.ArgumentParser()
    common.add_detection_args(q, out=args.out)
    targs = q.parse_args(["--synthetic-dir", data, *driver_args(SNIP, extra)])
    common.check_detection_args(q, targs)
    if targs.data is None and targs.train_ann is None:  # generate once, before runs start side by side
        common.prepare_synthetic(data, targs.size_scale, targs.synthetic)

    def run_seed(seed):
        results = []
        for name, driver, flags in RUNS:
            if name not in args.recipes:
                continue
            out = os.path.join(args.out, f"{name}_s{seed}")
            cmd = [sys.executable, driver, *flags,
                   "--seed", str(seed), "--out", out, "--synthetic-dir", data, *driver_args(driver, extra)]
            results.append(common.run_once(cmd, out, os.path.join(args.out, f"{name}_s{seed}.log"),
                                           f"{name}, seed {seed}"))
        return results

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        runs = [r for rs in pool.map(run_seed, args.seeds) for r in rs]
    summary = summarise(runs)
    md = table(summary)
    report = {"summary": summary, "runs": runs, "extra_args": extra, "seeds": args.seeds,
              "wall_seconds_this_invocation": time.perf_counter() - start,
              "machine": {"platform": platform.platform(), "processor": platform.processor(),
                          "cpus": os.cpu_count(), "load_average": os.getloadavg()}}
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(report, f, indent=1)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(md)
    print(md)
    return report


if __name__ == "__main__":
    main()
