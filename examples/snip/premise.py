"""SNIP's premise (thesis §2.3, Fig. 2.4): a classifier trained on large objects fails on up-sampled small ones.

Three networks on one seeded classification set (one object per crop, the
classes of the synthetic detection data, :func:`scalekit.datasets.synthetic.make_synthetic_scale_crops`):

* CNN-B: trained on full-resolution crops (``--size``), tested on crops at
  every ``--test-res`` up-sampled back to ``--size`` (bilinear);
* CNN-S: the same layers with a stem for low resolution (``--low`` r: stem
  stride 4r/size, a 3x3 stride-1 conv for size/4, the CIFAR stem of §2.3, and a
  5x5 stride-2 conv for size/2), trained and tested at r;
* CNN-B-FT: CNN-B fine-tuned on up-sampled r crops, tested on them.

Per renderer (``--renderers``: ``scale_true``, the crops down-sampled as §2.3
down-samples ImageNet; ``today``, small objects drawn by make_synthetic_coco's
renderer as today's detection data holds them): accuracy per test resolution
(mean over ``--seeds``, 95% bootstrap interval over test images of the
seed-averaged correctness), paired differences with their bootstrap
intervals, and whether the thesis' order CNN-B-FT > CNN-S > CNN-B holds (an
interval excluding zero). Training seeds change the initialisation and the
order of batches; the data are one draw (``--data-seed``).

CNN-B's weights are saved as ``cnn_b_<renderer>_seed<k>.pt`` (a state_dict,
``torch.load(..., weights_only=True)``): ``body`` (stem and three stages,
``body.out_channels`` 64 channels at ``body.stride`` 16) is the part a
single-level detector reuses as its backbone; ``head`` (pooling and a linear
layer) is the classifier. Outputs in ``--out``: ``results.json``, the
checkpoints, and ``--figure`` if given.

    python examples/snip/premise.py --out runs/premise --figure runs/premise/premise.png
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import common  # noqa: E402

from scalekit.datasets.synthetic import make_synthetic_scale_crops  # noqa: E402

NETS = ("CNN-B", "CNN-S", "CNN-B-FT")
PAIRS = (("CNN-B-FT", "CNN-B"), ("CNN-S", "CNN-B"), ("CNN-B-FT", "CNN-S"))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog="\n".join(__doc__.splitlines()[2:]),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/premise", help="output folder (default: %(default)s)")
    p.add_argument("--renderers", nargs="+", choices=("scale_true", "today"), default=["scale_true", "today"])
    p.add_argument("--size", type=int, default=64, help="full resolution, CNN-B's (default: %(default)s)")
    p.add_argument("--test-res", type=int, nargs="+", default=[48, 32, 24, 16], help="CNN-B's lower test resolutions")
    p.add_argument("--low", type=int, nargs="+", default=[16, 32], help="CNN-S and CNN-B-FT resolutions (size/4, size/2)")
    p.add_argument("--train", type=int, default=1500, help="training crops (default: %(default)s)")
    p.add_argument("--test", type=int, default=1200, help="test crops (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=8, help="CNN-B's and CNN-S's epochs (default: %(default)s)")
    p.add_argument("--ft-epochs", type=int, default=3, help="CNN-B-FT's epochs (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.05, help="SGD rate, cosine to 0 (fine-tuning: a fifth)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    p.add_argument("--data-seed", type=int, default=1000, help="training crops' seed; test crops use +1000")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples over test images")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--figure", default=None, help="PNG of accuracy against test resolution (matplotlib)")
    args = p.parse_args(argv)
    for r in args.low:
        if r * 4 != args.size and r * 2 != args.size:
            p.error(f"--low: each resolution must be size/4 or size/2 (a stem stride of 1 or 2), got {r} for size {args.size}")
    if any(not 4 <= r < args.size for r in args.test_res):
        p.error(f"--test-res: each must lie in [4, --size={args.size}), got {args.test_res}")
    return args


def prepare(images: torch.Tensor, size: int | None) -> torch.Tensor:
    """uint8 ``[N, 3, r, r]`` -> float, normalised, up-sampled (bilinear) to ``size`` if given."""
    x = images.float().div(255).sub(common.PREMISE_MEAN).div(common.PREMISE_STD)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False) if size and size != x.shape[-1] else x


def train(model, x, y, epochs: int, lr: float, args, seed: int, desc: str):
    """SGD (momentum 0.9, weight decay 5e-4, cosine rate), random horizontal flips."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    steps = epochs * -(-len(x) // args.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + np.cos(np.pi * s / max(1, steps))))
    model.train()
    bar = common.Progress(range(steps), desc=desc, every=30)
    batches = iter(())
    for _ in bar:
        idx = next(batches, None)
        if idx is None:
            batches = iter(torch.randperm(len(x), generator=gen).split(args.batch_size))
            idx = next(batches)
        xb = x[idx]
        flip = torch.rand(len(idx), generator=gen) < 0.5
        xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
        loss = F.cross_entropy(model(xb), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        bar.set(loss=loss.item())
    return model.eval()


@torch.no_grad()
def correct(model, x, y) -> np.ndarray:
    """Per test image: 1.0 where the top-1 class is right."""
    return torch.cat([model(b).argmax(1) for b in x.split(256)]).eq(y).float().numpy()


def interval(values: np.ndarray, args, seed: int = 0) -> list[float]:
    """95% percentile bootstrap interval of the mean of ``values`` (one per test image)."""
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (args.bootstrap, len(values)))].mean(1)
    return [round(float(v), 4) for v in np.percentile(means, [2.5, 97.5])]


def run_renderer(render: str, args, log) -> dict:
    size, tests = args.size, sorted(set(args.test_res) | set(args.low), reverse=True)
    kw = {"size": size, "resolutions": tests, "render": render}
    tr = make_synthetic_scale_crops(args.train, args.data_seed, **kw)
    te = make_synthetic_scale_crops(args.test, args.data_seed + 1000, **kw)
    k, chance = len(tr["classes"]), 1 / len(tr["classes"])
    hits = {}  # (net, test resolution) -> [seeds, test images]
    for seed in args.seeds:
        torch.manual_seed(seed)
        base = train(common.PremiseNet(k), prepare(tr["images"][size], None), tr["labels"], args.epochs, args.lr, args, seed,
                     f"{render} seed {seed} CNN-B")
        torch.save(base.state_dict(), os.path.join(args.out, f"cnn_b_{render}_seed{seed}.pt"))
        for r in [size, *tests]:
            hits.setdefault(("CNN-B", r), []).append(correct(base, prepare(te["images"][r], size), te["labels"]))
        for r in args.low:
            torch.manual_seed(seed)
            small = train(common.PremiseNet(k, stem_stride=4 * r // size), prepare(tr["images"][r], None), tr["labels"],
                          args.epochs, args.lr, args, seed, f"{render} seed {seed} CNN-S {r}")
            hits.setdefault(("CNN-S", r), []).append(correct(small, prepare(te["images"][r], None), te["labels"]))
            ft = common.PremiseNet(k)
            ft.load_state_dict(base.state_dict())
            ft = train(ft, prepare(tr["images"][r], size), tr["labels"], args.ft_epochs, args.lr / 5, args, seed,
                       f"{render} seed {seed} CNN-B-FT {r}")
            hits.setdefault(("CNN-B-FT", r), []).append(correct(ft, prepare(te["images"][r], size), te["labels"]))
        log(f"{render} seed {seed}: " + ", ".join(f"{n}@{r} {np.mean(h[-1]):.3f}" for (n, r), h in hits.items()))
    acc = {n: {} for n in NETS}
    for (n, r), h in hits.items():
        h = np.stack(h)
        ci = interval(h.mean(0), args)
        acc[n][str(r)] = {"mean": round(float(h.mean()), 4), "seeds": [round(float(v), 4) for v in h.mean(1)],
                          "ci": ci, "above_chance": ci[0] > chance}
    diffs, drop = {}, {}
    for r in args.low:
        diffs[str(r)] = {}
        for a, b in PAIRS:
            d = np.stack(hits[(a, r)]) - np.stack(hits[(b, r)])
            diffs[str(r)][f"{a} - {b}"] = {"mean": round(float(d.mean()), 4), "ci": interval(d.mean(0), args),
                                           "seeds": [round(float(v), 4) for v in d.mean(1)]}
    for r in tests:
        d = np.stack(hits[("CNN-B", r)]) - np.stack(hits[("CNN-B", size)])
        drop[str(r)] = {"mean": round(float(d.mean()), 4), "ci": interval(d.mean(0), args)}
    order = {r: all(diffs[r][f"{a} - {b}"]["ci"][0] > 0 for a, b in PAIRS) for r in diffs}
    return {"accuracy": acc, "differences": diffs, "cnn_b_change": drop, "chance": round(chance, 4),
            "cnn_b_degrades": {r: d["ci"][1] < 0 for r, d in drop.items()}, "order_holds": order}


def pct(v: float) -> str:
    return f"{100 * v:.1f}"


def table(result: dict) -> str:
    """The docs' table: accuracy (%, mean over seeds; seed range) per network and test resolution."""
    size, tests = result["settings"]["size"], sorted(set(result["settings"]["test_res"]) | set(result["settings"]["low"]),
                                                    reverse=True)
    cols = [size, *tests]
    lines = [".. list-table::", "   :header-rows: 1", "", "   * - renderer", "     - network"]
    lines += [f"     - {r} px" for r in cols]
    for render, res in result["renderers"].items():
        for n in NETS:
            lines += [f"   * - {render}", f"     - {n}" + ("" if n == "CNN-B" else " (at r)")]
            for r in cols:
                a = res["accuracy"][n].get(str(r))
                lines.append(f"     - {pct(a['mean'])} ({pct(min(a['seeds']))}-{pct(max(a['seeds']))})" if a else "     -")
    return "\n".join(lines)


def differences(result: dict) -> str:
    """The docs' second table: paired differences (points) with 95% bootstrap intervals, and the verdicts."""
    lines = [".. list-table::", "   :header-rows: 1", "", "   * - renderer", "     - r"]
    lines += [f"     - {a} - {b}" for a, b in PAIRS] + ["     - CNN-B at r - CNN-B at full", "     - order holds"]
    for render, res in result["renderers"].items():
        for r, d in res["differences"].items():
            lines += [f"   * - {render}", f"     - {r} px"]
            for a, b in PAIRS:
                e = d[f"{a} - {b}"]
                lines.append(f"     - {pct(e['mean'])} [{pct(e['ci'][0])}, {pct(e['ci'][1])}]")
            c = res["cnn_b_change"][r]
            lines += [f"     - {pct(c['mean'])} [{pct(c['ci'][0])}, {pct(c['ci'][1])}]",
                      f"     - {'yes' if res['order_holds'][r] else 'no'}"]
    return "\n".join(lines)


def figure(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(result["renderers"]), figsize=(5 * len(result["renderers"]), 3.6), squeeze=False)
    for ax, (render, res) in zip(axes[0], result["renderers"].items()):
        for n, style in zip(NETS, ("o-", "s--", "^-")):
            pts = sorted((int(r), a["mean"]) for r, a in res["accuracy"][n].items())
            ax.plot(*zip(*pts), style, label=n)
        ax.axhline(res["chance"], color="grey", lw=0.8, ls=":", label="chance")
        ax.set(title=render, xlabel="test resolution (px)", ylabel="top-1 accuracy", ylim=(0, 1.02))
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def commit() -> str | None:
    """The checkout's commit (``git rev-parse --short HEAD``), ``+`` if it has uncommitted changes; None outside git."""
    import subprocess

    here = os.path.dirname(os.path.abspath(__file__))
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True,
                               text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return head.stdout.strip() + ("+" if dirty.stdout.strip() else "")


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    log, start = common.stage_log("premise"), time.perf_counter()
    result = {"settings": {k: v for k, v in vars(args).items() if k not in ("out", "figure", "threads")},
              "renderers": {r: run_renderer(r, args, log) for r in args.renderers}}
    result["wall_s"] = round(time.perf_counter() - start, 1)
    result["commit"], result["torch"] = commit(), torch.__version__
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(table(result), differences(result), sep="\n\n")
    for render, res in result["renderers"].items():
        print(f"{render}: CNN-B degrades at " + ", ".join(f"{r}: {v}" for r, v in res["cnn_b_degrades"].items())
              + "; order CNN-B-FT > CNN-S > CNN-B holds at " + ", ".join(f"{r}: {v}" for r, v in res["order_holds"].items()))
    if args.figure:
        figure(result, args.figure)
    log(f"done in {result['wall_s']:.0f} s; {args.out}/results.json")
    return result


if __name__ == "__main__":
    main()
