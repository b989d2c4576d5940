"""The R-FCN-3000 reproduction: every run of ``train.py`` on the same data, several seeds, paired
bootstrap comparisons, Table 4.4's NMS groups, the speed rows, and the page's tables.

Runs, once per seed, each in its own process in ``OUT/<run>_s<seed>`` (a run whose
``results.json`` exists is read, not run again, so an interrupted reproduction continues):

* ``K1``, ``K5``, ``K25``: the decoupled head with 1, 5 (the number of families) and 25
  super-classes, NMS per class in all three, so K is the only change (Table 4.3); ``K5`` and
  ``K25`` are then evaluated with NMS per class, per super-class and class-agnostic (Table 4.4);
  ``K1`` also adds the held-out classes from classification crops alone (§4.6.3);
* ``K1_c20`` vs ``rfcn_c20``: decoupled vs class-specific R-FCN head on 20 classes, same backbone,
  proposals, schedule and NMS (per class) (Table 4.6, PASCAL VOC's 20 classes in the thesis);
* ``OB`` vs ``K1`` (GO): objectness trained with vs without boxes of the held-out classes,
  objectness AP on the held-out classes' objects (Table 4.7); ``K1_c10``, ``K1_c50``: objectness
  trained on 10 or 50 classes (Fig. 4.7);
* ``K1_e1``, ``K1_e6``, ``K1_e12`` (``--budget-seeds``): ``K1`` trained 1, 6 or 12 epochs instead of
  3: AP against training budget;
* Table 4.5: ``K1`` is also evaluated with the RPN's scores as objectness, with and without the
  head's box regression; ``K1_ov05`` is ``K1`` with the RPN trained at the overlaps 0.5 / 0.4
  instead of 0.7 / 0.3, evaluated both ways too;
* ``K1_cls``: Table 4.2's setting, ``K1`` trained on the classification images and their boxes
  instead of the detection images, at the same iterations (150 a epoch) and batch size.

Then (``--speed``) randomly initialised detectors, decoupled vs class-specific, 200 / 1,000 / 3,000
classes, one thread and two (``--only-speed`` re-measures only these into an existing
``OUT/results.json``, e.g. on a quieter machine). Comparisons are paired over the validation images and averaged over
the seeds both arms ran (:mod:`rfcn3000_stats`). Writes ``OUT/results.json`` and ``OUT/tables.rst``
(the page's tables); ``--json`` copies the JSON there too. Arguments after ``--`` go to every run.

    python examples/rfcn3000/reproduce.py --seeds 0 1 2 --budget-seeds 0 --speed \
        --out runs/rfcn3000_repro --json docs/_static/rfcn3000_results.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]
import common  # noqa: E402
import rfcn3000_stats as stats  # noqa: E402

# Seed by seed; K1 first: it trains the classification network K5 and K25 of the seed reuse. A run's
# own flags come after the common ones and win. Every decoupled run uses NMS per class (the default).
RUNS = (("K1", ["--superclasses", "1", "--rpn-objectness"]), ("K1_c10", ["--train-classes", "10", "--no-add-classes"]),
        ("K5", ["--superclasses", "5", "--no-add-classes", "--nms-compare"]),
        ("K25", ["--superclasses", "25", "--no-add-classes", "--nms-compare"]),
        ("K1_c20", ["--train-classes", "20", "--no-add-classes"]),
        ("rfcn_c20", ["--head", "rfcn", "--train-classes", "20"]),
        ("OB", ["--box-held-out", "--no-add-classes"]), ("K1_c50", ["--train-classes", "50", "--no-add-classes"]),
        ("K1_ov05", ["--rpn-iou", "0.5", "0.4", "--rpn-objectness", "--no-add-classes"]),
        # the detection runs make 150 steps an epoch (600 images, 4 a step); the classification set has 2,520
        ("K1_cls", ["--train-on", "classification", "--no-add-classes", "--max-steps", "150"]))
NOT_BY_DEFAULT = ("K1_c10", "K1_c50", "K1_e12")  # Fig. 4.7's runs and the longest budget: not in the default (time)
BUDGET_RUNS = (("K1_e1", ["--epochs", "1", "--no-add-classes"]), ("K1_e6", ["--epochs", "6", "--no-add-classes"]),
               ("K1_e12", ["--epochs", "12", "--no-add-classes"]))
ALL_RUNS = RUNS + BUDGET_RUNS


def summarise(runs: list[dict]) -> dict:
    """Per run name: mean and half the range over seeds of every figure."""
    out = {}
    for name, _ in ALL_RUNS:
        rs = [r for r in runs if r["run"] == name]
        if not rs:
            continue
        figures = {
            "AP": [r["known"]["coco"]["AP"] for r in rs], "AP50": [r["known"]["coco"]["AP50"] for r in rs],
            "AP75": [r["known"]["coco"].get("AP75", float("nan")) for r in rs],  # absent in older runs
            "objectness_AP_all": [r["known"]["objectness_all"]["AP"] for r in rs],
            "objectness_AP50_held_out": [r["known"]["objectness_held_out"]["AP50"] for r in rs],
            "objectness_AP_held_out": [r["known"]["objectness_held_out"]["AP"] for r in rs],
            "images_per_s": [r["known"]["images_per_s"] for r in rs],
            "head_ms": [r["known"]["head_ms_per_image"] for r in rs],
            "train_seconds": [r["train_seconds"] for r in rs],
            "classifier_accuracy": [r["superclasses"]["classifier_train_accuracy"] for r in rs],
            "recovery_ari": [r["superclasses"]["recovery_ari"] for r in rs],
            "recovery_purity": [r["superclasses"]["recovery_purity"] for r in rs],
        }
        if all("held_out_AP" in r for r in rs):
            figures["held_out_AP"] = [r["held_out_AP"] for r in rs]
            figures["all_AP"] = [r["all"]["coco"]["AP"] for r in rs]
        out[name] = {"seeds": [r["seed"] for r in rs], "train_classes": rs[0]["num_known"],
                     "epochs": rs[0]["args"]["epochs"], **{k: common.seed_stat(v) for k, v in figures.items()}}
        for arm in ("rpn", "rpn_bbr"):
            if all(arm in r.get("rpn_objectness", {}) for r in rs):
                out[name][arm] = {k: common.seed_stat([r["rpn_objectness"][arm][k] for r in rs])
                                  for k in ("AP", "AP50", "AP75")}
        if all("nms_groups" in r for r in rs):
            out[name]["nms_groups"] = {g: {k: common.seed_stat([r["nms_groups"][g][k] for r in rs])
                                           for k in rs[0]["nms_groups"][g]} for g in rs[0]["nms_groups"]}
    return out


@torch.no_grad()
def speed(classes=(200, 1000, 3000), image_size: int = 128, repeats: int = 20, budget_s: float = 10.0,
          threads=(1, 2)) -> list[dict]:
    """Detection images/s of the whole detector, and the medians of the head's forward and of
    its post-processing (scores, NMS) in ms/image; random weights, one image at a time,
    ``repeats`` images or as many as fit in ``budget_s`` seconds (at least 3).

    With random weights every class scores about ``p(object) / C``: how many
    (RoI, class) candidates pass the score threshold, and so the NMS time,
    depends on ``C`` in a way a trained detector's does not. The forward time
    is the architecture's cost.
    """
    train = common.import_script(os.path.join(HERE, "train.py"), "rfcn3000_train")

    rows = []
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, image_size, image_size, generator=g) for _ in range(4)]
    for c, n_threads, head in ((c, t, h) for t in threads for c in classes for h in ("decoupled", "rfcn")):
        torch.set_num_threads(n_threads)
        args = train.parse_args(["--head", head, "--image-size", str(image_size)])
        torch.manual_seed(0)
        model = train.build_model(args, c).eval()
        total_t, forward_t = [], []

        def timer(store):
            def pre(m, i):
                store.append(-time.perf_counter())

            def post(m, i, o):
                store[-1] += time.perf_counter()
            return pre, post

        for module, store in ((model.roi_heads, total_t), (model.roi_heads.head, forward_t)):
            pre, post = timer(store)
            module.register_forward_pre_hook(pre)
            module.register_forward_hook(post)
        with torch.no_grad():
            for im in images[:1]:  # warm-up
                model([im])
            total_t.clear()
            forward_t.clear()
            t0 = time.perf_counter()
            done = 0
            while done < repeats and (done < 3 or time.perf_counter() - t0 < budget_s):
                model([images[done % len(images)]])
                done += 1
        seconds = time.perf_counter() - t0
        post_ms = [1000 * (t - f) for t, f in zip(total_t, forward_t)]
        rows.append({"classes": c, "head": head, "threads": n_threads, "load_average_1min": os.getloadavg()[0],
                     "images_per_s": done / seconds, "images": done,
                     "head_forward_ms": 1000 * float(np.median(forward_t)),
                     "postprocess_ms": float(np.median(post_ms)),
                     "parameters_M": sum(p.numel() for p in model.parameters()) / 1e6})
        r = rows[-1]
        print(f"speed: C={c:<5} {head:<9} {n_threads} thread(s) {r['images_per_s']:.2f} images/s, head forward "
              f"{r['head_forward_ms']:.1f} ms, post-processing {r['postprocess_ms']:.1f} ms, "
              f"{r['parameters_M']:.1f} M parameters", flush=True)
    return rows


def main(argv=None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    argv, extra = common.split_passthrough(argv)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog="\n".join(__doc__.splitlines()[2:]),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (default: %(default)s)")
    p.add_argument("--budget-seeds", type=int, nargs="*", default=[0],
                   help="seeds of the budget runs K1_e1/e6/e12 (default: %(default)s)")
    p.add_argument("--out", default="runs/rfcn3000_repro", help="output folder (default: %(default)s)")
    p.add_argument("--runs", nargs="+", default=[n for n, _ in ALL_RUNS if n not in NOT_BY_DEFAULT],
                   choices=[n for n, _ in ALL_RUNS], help="runs (default: all but %s)" % " ".join(NOT_BY_DEFAULT))
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default: %(default)s)")
    p.add_argument("--speed", action="store_true", help="also time 200 / 1,000 / 3,000-class detectors")
    p.add_argument("--speed-budget", type=float, default=5.0,
                   help="seconds of timing per speed row, at least 3 images (default: %(default)s)")
    p.add_argument("--speed-classes", type=int, nargs="+", default=[200, 1000, 3000])
    p.add_argument("--json", help="also write the results JSON here (e.g. docs/_static/rfcn3000_results.json)")
    p.add_argument("--only-speed", action="store_true",
                   help="re-measure only the speed rows (e.g. on a quieter machine) into OUT/results.json, "
                        "which must exist; the runs and comparisons are kept as they are")
    args = p.parse_args(argv)
    if args.only_speed:
        if extra:
            p.error(f"--only-speed trains nothing: the arguments after -- ({' '.join(extra)}) would be ignored")
        return _only_speed(args)
    os.makedirs(args.out, exist_ok=True)
    data_dir = os.path.join(args.out, "data")
    t0 = time.perf_counter()
    todo = [(name, flags, s) for s in args.seeds for name, flags in RUNS if name in args.runs]  # seed by seed
    todo += [(name, flags, s) for name, flags in BUDGET_RUNS for s in args.budget_seeds if name in args.runs]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    # the data first, once per training-class set
    def data_flags(flags):  # only these change the data
        return tuple(f for i, f in enumerate(flags)
                     if f in ("--box-held-out", "--train-classes") or i and flags[i - 1] == "--train-classes")

    for flags in sorted({data_flags(flags) for _, flags, _ in todo}):
        subprocess.run([sys.executable, os.path.join(HERE, "train.py"), "--data-only", "--synthetic-dir", data_dir,
                        "--out", os.path.join(args.out, "_data"), *extra, *flags], env=env, check=True)
    runs = []
    for name, flags, seed in todo:
        out = os.path.join(args.out, f"{name}_s{seed}")
        argv = ["--out", out, "--seed", str(seed), "--synthetic-dir", data_dir,
                "--classifier-cache", os.path.join(args.out, "classifiers"), *extra, *flags]
        if not os.path.exists(os.path.join(out, "results.json")):
            cmd = [sys.executable, os.path.join(HERE, "train.py"), *argv]
            print(f"[{(time.perf_counter() - t0) / 60:.1f} min] $", " ".join(cmd), flush=True)
            with open(os.path.join(args.out, f"{name}_s{seed}.log"), "w") as log:
                rc = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
            if rc != 0:
                print(f"run {name} seed {seed} failed (rc {rc}); see {args.out}/{name}_s{seed}.log", flush=True)
                continue
        with open(os.path.join(out, "results.json")) as f:
            runs.append({"run": name, "seed": seed, **json.load(f)})
        changed = changed_settings(runs[-1]["args"], argv)
        if changed:
            print(f"warning: {out} was trained with other settings than this command gives it ({', '.join(changed)}); "
                  f"its results are used as they are: delete the folder to train it again", flush=True)
    train_minutes = (time.perf_counter() - t0) / 60
    held_out = runs[0]["held_out"] if runs else []
    comparisons = stats.compare(runs, args.out, stats.load(_val_json(data_dir)), held_out, resamples=args.resamples)
    speed_rows, speed_machine = _speed_rows(args) if args.speed else (None, None)
    result = {"summary": summarise(runs), "comparisons": comparisons, "resamples": args.resamples,
              "speed": speed_rows, "speed_machine": speed_machine, "runs": [_slim(r) for r in runs], "held_out": held_out,
              "wall_seconds": time.perf_counter() - t0, "train_minutes": train_minutes,
              "machine": {"platform": platform.platform(), "processor": platform.processor(),
                          "cpus": os.cpu_count(), "torch": torch.__version__, "omp_threads": env["OMP_NUM_THREADS"]},
              "seeds": args.seeds, "budget_seeds": args.budget_seeds, "extra_args": extra}
    _write(result, args)
    return result


def _speed_rows(args) -> tuple[list[dict], dict]:
    """The speed rows, and where and when they were measured (the machine and its load)."""
    load_before = os.getloadavg()
    rows = speed(classes=tuple(args.speed_classes), budget_s=args.speed_budget)
    machine = {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
               "load_average_1min_before": load_before[0], "load_average_1min_after": os.getloadavg()[0],
               "measured": time.strftime("%Y-%m-%d %H:%M %Z")}
    print(f"speed rows measured at load average {load_before[0]:.2f} (1 min) before, "
          f"{machine['load_average_1min_after']:.2f} after", flush=True)
    return rows, machine


def _only_speed(args) -> dict:
    path = os.path.join(args.out, "results.json")
    if not os.path.exists(path):
        raise SystemExit(f"--only-speed needs the results of a full reproduction in {path}; there is none: "
                         "run without --only-speed first")
    result = stats.load(path)
    result["speed"], result["speed_machine"] = _speed_rows(args)
    print("speed rows re-measured; the runs and comparisons are those of the last full reproduction", flush=True)
    _write(result, args)
    return result


def _write(result: dict, args) -> None:
    for path in filter(None, (os.path.join(args.out, "results.json"), args.json)):
        with open(path, "w") as f:
            json.dump(result, f, indent=1, default=float)
    text = stats.page_tables(result)
    with open(os.path.join(args.out, "tables.rst"), "w") as f:
        f.write(text)
    print(text + f"\nWall time {result['wall_seconds'] / 60:.1f} min.")


def changed_settings(stored: dict, argv: list[str]) -> list[str]:
    """The settings of ``train.py argv`` that differ from a finished run's stored ``args``."""
    train = common.import_script(os.path.join(HERE, "train.py"), "rfcn3000_train")
    now = json.loads(json.dumps(vars(train.parse_args(argv)), default=float))
    return sorted(k for k in now if stored.get(k, "<absent>") != now[k])


def _val_json(data_dir: str) -> str:
    """The validation annotations of the synthetic data (any family/class layout)."""
    for root, _, files in sorted(os.walk(data_dir)):
        if os.path.basename(root).startswith("val_") and "annotations.json" in files:
            return os.path.join(root, "annotations.json")
    common.fail(f"no validation split under {data_dir}")


def _slim(r: dict) -> dict:
    """One run's figures for the JSON (no per-class tables, no arguments but the epochs)."""
    known = {k: v for k, v in r["known"].items() if k != "coco"}
    return {"run": r["run"], "seed": r["seed"], "epochs": r["args"]["epochs"], "train_seconds": r["train_seconds"],
            "AP": r["known"]["coco"]["AP"], "AP50": r["known"]["coco"]["AP50"], **known,
            "superclasses": r["superclasses"],
            **{k: r[k] for k in ("held_out_AP", "nms_groups", "rpn_objectness") if k in r}}


if __name__ == "__main__":
    main()
