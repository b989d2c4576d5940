"""What every example's training script needs, written once: a progress bar
with ETA, a JSONL log and a PNG of the loss curves, checkpoints that resume
(loaded with ``weights_only=True``), ``torchrun`` set-up, seeding and mixed
precision, result caches keyed by their arguments and a resumable epoch loop
(standard library, torch, Pillow and :mod:`scalekit.progress`); and, for the detection
examples (``snip/``, ``sniper/``), their shared plumbing: the command-line
flags, the data (a seeded synthetic COCO set by default), a CPU-sized
torchvision Faster R-CNN, the SGD loop with resume, pyramid evaluation and
the results line. The methods themselves are scalekit calls in each driver.

Scripts in ``examples/<system>/`` import it with::

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import common
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import os
import random
import sys
import time
from collections.abc import Iterable

import numpy as np
import torch
import torch.distributed as dist

from scalekit.progress import Progress  # noqa: F401  (re-exported: the examples' bar is the library's)

__all__ = ["Progress", "JsonlLog", "plot_curves", "save_checkpoint", "load_checkpoint", "Distributed",
           "seed_everything", "autocast", "fail", "stage_log", "fingerprint", "cached", "cached_dir", "train_epochs",
           "optimizer_step", "import_script", "seed_stat", "mean_spread", "split_passthrough", "run_once", "KeepBest"]


def import_script(path: str, name: str):
    """Import the script at ``path`` as module ``name`` (once per process).

    Several examples have a ``train.py`` and a ``reproduce.py``: imported by
    their bare names in one process (a test session, a reproduction script),
    the second would silently get the first's module.
    """
    import importlib.util

    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    return sys.modules[name]


def seed_stat(values) -> dict:
    """A figure over seeds: ``{"mean", "spread" (half the range, (max - min) / 2), "values"}``."""
    v = np.asarray(values, dtype=float)
    return {"mean": float(v.mean()), "spread": float((v.max() - v.min()) / 2), "values": v.tolist()}


def mean_spread(stat: dict, scale: float = 100.0, digits: int = 1) -> str:
    """``"12.3 ± 0.4"`` from a :func:`seed_stat` (scaled, e.g. AP to %)."""
    return f"{stat['mean'] * scale:.{digits}f} ± {stat['spread'] * scale:.{digits}f}"


class KeepBest:
    """Early stopping by a validation score: ``keep(epoch)`` scores the model (``score()``, higher is
    better) and keeps a copy of its state when it beats every earlier call (ties: the earlier);
    ``restore()`` loads that state into the model and returns ``{"val", "epoch", "curve"}`` (``val``
    -1 and ``epoch`` ``default_epoch`` when never called: the model as trained)."""

    def __init__(self, model: torch.nn.Module, score, default_epoch: int) -> None:
        self.model, self.score, self.curve = model, score, []
        self.best, self.state = {"val": -1.0, "epoch": default_epoch}, None

    def __call__(self, epoch: int) -> None:
        val = float(self.score())
        self.curve.append([epoch, val])
        if val > self.best["val"]:
            self.best, self.state = {"val": val, "epoch": epoch}, copy.deepcopy(self.model.state_dict())

    def restore(self) -> dict:
        if self.state is not None:
            self.model.load_state_dict(self.state)
        return {**self.best, "curve": self.curve}


def run_once(cmd: list[str], out: str, log_path: str, label: str) -> dict:
    """A reproduction's run: ``cmd`` in its own process, its output in ``log_path``, unless
    ``out/results.json`` exists (an interrupted reproduction continues where it stopped);
    that file's contents. A failed run stops the reproduction naming its log."""
    import subprocess

    result = os.path.join(out, "results.json")
    if not os.path.exists(result):
        print(f"== {label}: {' '.join(cmd[1:])}", flush=True)
        t = time.perf_counter()
        with open(log_path, "w") as log:
            done = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
        if done.returncode != 0:
            raise SystemExit(f"error: {label} failed; see {log_path}")
        print(f"== {label}: {time.perf_counter() - t:.0f} s", flush=True)
    with open(result) as f:
        return json.load(f)


def split_passthrough(argv: list[str]) -> tuple[list[str], list[str]]:
    """A reproduction script's own arguments, and those after ``--`` for every training run."""
    if "--" not in argv:
        return list(argv), []
    i = argv.index("--")
    return list(argv[:i]), list(argv[i + 1:])


def fail(message: str) -> None:
    """Exit with a one-line error (no traceback) for problems a user can fix."""
    sys.stderr.write(f"error: {message}\n")
    raise SystemExit(2)


class JsonlLog:
    """Append one JSON object per line (``{"epoch": 0, "iter": 10, "loss": ...}``)."""

    def __init__(self, path: str, enabled: bool = True) -> None:
        self.path, self.enabled = path, enabled
        if enabled:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

    def write(self, **record) -> None:
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps(record, default=float) + "\n")


def plot_curves(jsonl: str, png: str, keys: Iterable[str] | None = None, x: str = "iter",
                size: tuple[int, int] = (800, 420)) -> list[str]:
    """Draw the numeric series of a JSONL log (losses by default) against ``x`` into a PNG.

    Returns the keys drawn. Pillow only, so that no plotting library is needed.
    """
    from PIL import Image, ImageDraw

    rows = [json.loads(line) for line in open(jsonl)] if os.path.exists(jsonl) else []
    rows = [r for r in rows if x in r]
    if keys is None:
        keys = sorted({k for r in rows for k, v in r.items() if k.startswith("loss") and isinstance(v, (int, float))})
    keys = list(keys)
    w, h = size
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    left, right, top, bottom = 60, w - 160, 20, h - 40
    draw.rectangle([left, top, right, bottom], outline="black")
    series = {k: [(r[x], r[k]) for r in rows if isinstance(r.get(k), (int, float)) and math.isfinite(r[k])] for k in keys}
    points = [p for s in series.values() for p in s]
    if points:
        x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
        y0, y1 = 0.0, max(p[1] for p in points) or 1.0
        colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
        for n, (k, s) in enumerate(series.items()):
            c = colours[n % len(colours)]
            xy = [(left + (px - x0) / max(x1 - x0, 1e-12) * (right - left),
                   bottom - (py - y0) / max(y1 - y0, 1e-12) * (bottom - top)) for px, py in s]
            if len(xy) > 1:
                draw.line(xy, fill=c, width=2)
            draw.text((right + 10, top + 16 * n), k, fill=c)
        draw.text((left, bottom + 8), f"{x} {x0:g}", fill="black")
        draw.text((right - 60, bottom + 8), f"{x1:g}", fill="black")
        draw.text((5, top), f"{y1:.3g}", fill="black")
        draw.text((5, bottom - 10), "0", fill="black")
    os.makedirs(os.path.dirname(os.path.abspath(png)), exist_ok=True)
    image.save(png)
    return keys


def save_checkpoint(path: str, *, model: torch.nn.Module, optimizer=None, scheduler=None, epoch: int,
                    **extra) -> None:
    """Write atomically (temporary file, then rename) what :func:`load_checkpoint` reads."""
    state = {"model": model.state_dict(), "epoch": epoch, "extra": extra}
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    if scheduler is not None:
        state["scheduler"] = scheduler.state_dict()
    state["rng"] = {"torch": torch.get_rng_state()}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str, *, model: torch.nn.Module, optimizer=None, scheduler=None,
                    map_location="cpu") -> dict:
    """Load a checkpoint with ``weights_only=True``; returns ``{"epoch", "extra"}``."""
    if not os.path.isfile(path):
        fail(f"--resume: no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # a truncated or foreign file
        fail(f"--resume: {path} is not a checkpoint this script wrote ({exc.__class__.__name__}: {exc})")
    model.load_state_dict(state["model"])
    if optimizer is not None and "optimizer" in state:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and "scheduler" in state:
        scheduler.load_state_dict(state["scheduler"])
    if "rng" in state:
        torch.set_rng_state(state["rng"]["torch"])
    return {"epoch": int(state["epoch"]), "extra": state.get("extra", {})}


class Distributed:
    """``torchrun`` set-up: rank, world size and device; a no-op single process otherwise."""

    def __init__(self, device: str = "cpu") -> None:
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if device.startswith("cuda") and not torch.cuda.is_available():
            fail("--device cuda: no CUDA device is visible")
        if self.world_size > 1:
            backend = "nccl" if device.startswith("cuda") else "gloo"
            dist.init_process_group(backend)
            if device.startswith("cuda"):
                torch.cuda.set_device(self.local_rank)
                device = f"cuda:{self.local_rank}"
        self.device = torch.device(device)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: torch.nn.Module, **ddp_options) -> torch.nn.Module:
        """``DistributedDataParallel(model, **ddp_options)`` under ``torchrun``; the model itself otherwise."""
        if self.world_size == 1:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids, **ddp_options)

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def close(self) -> None:
        if self.world_size > 1:
            dist.destroy_process_group()


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, numpy and torch; returns a ``torch.Generator`` seeded the same."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def autocast(device: torch.device, enabled: bool):
    """Mixed precision: float16 on CUDA, bfloat16 on the CPU; a no-op when disabled."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.float16 if device.type == "cuda" else torch.bfloat16)


def stage_log(prefix: str):
    """A ``log(message)`` that writes ``[prefix HH:MM:SS] message`` to stderr (beside the progress bars)."""
    def log(message: str) -> None:
        sys.stderr.write(f"[{prefix} {time.strftime('%H:%M:%S')}] {message}\n")
        sys.stderr.flush()
    return log


def fingerprint(**parts) -> str:
    """A short hash of the keyword values (JSON, keys sorted, ``str`` of the rest): a cache key."""
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def cached(path: str, key: str, compute, *, log=None, name: str = ""):
    """``compute()``'s value, saved at ``path`` under ``key``: loaded again (``weights_only=True``)
    while the key is the same, recomputed and rewritten (atomically) when it changed.
    ``log(f"{name}: cached {path}")`` says when nothing was computed."""
    if os.path.exists(path):
        stored = torch.load(path, weights_only=True)
        if stored.get("key") == key:
            if log is not None:
                log(f"{name}: cached {path}")
            return stored["value"]
    value = compute()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torch.save({"key": key, "value": value}, path + ".tmp")
    os.replace(path + ".tmp", path)
    return value


def cached_dir(root: str, key: str, build, *, log=None, name: str = "") -> str:
    """``root``, filled by ``build()`` unless ``root/key.txt`` holds ``key`` (written once a build finished)."""
    stamp = os.path.join(root, "key.txt")
    if os.path.exists(stamp):
        with open(stamp) as f:
            if f.read() == key:
                if log is not None:
                    log(f"{name}: cached {root}")
                return root
    build()
    os.makedirs(root, exist_ok=True)
    with open(stamp, "w") as f:
        f.write(key)
    return root


def optimizer_step(optimizer, loss: torch.Tensor, *, clip_norm: float | None = None) -> float:
    """``zero_grad``, ``backward``, the gradients' norm clipped to ``clip_norm`` (over the optimizer's
    parameters) when given, ``step``; returns the loss as a float."""
    optimizer.zero_grad()
    loss.backward()
    if clip_norm is not None:
        torch.nn.utils.clip_grad_norm_([p for group in optimizer.param_groups for p in group["params"]], clip_norm)
    optimizer.step()
    return loss.item()


def train_epochs(name: str, model: torch.nn.Module, optimizer, epochs: int, steps, *, folder: str,
                 resume: bool = False, map_location="cpu", total: int | None = None, log=None) -> torch.nn.Module:
    """Run ``steps(epoch)`` (yields each optimizer step's loss, a float) for epochs ``[start, epochs)``.

    Checkpoints ``folder/checkpoints/<name>.pt`` after every epoch; with ``resume`` starts after the
    epoch stored there. Losses go to ``folder/logs/<name>.jsonl`` (started afresh when training
    starts at epoch 0), the per-epoch mean's curve to ``folder/plots/<name>.png``. Returns the
    model in eval mode.
    """
    ckpt, jsonl = os.path.join(folder, "checkpoints", f"{name}.pt"), os.path.join(folder, "logs", f"{name}.jsonl")
    start = 0
    if resume and os.path.exists(ckpt):
        start = load_checkpoint(ckpt, model=model, optimizer=optimizer, map_location=map_location)["epoch"] + 1
        if log is not None:
            log(f"{name}: resumed from {ckpt} (epoch {start})")
    if start == 0 and os.path.exists(jsonl):
        os.remove(jsonl)
    logger, iteration = JsonlLog(jsonl), 0
    for epoch in range(start, epochs):
        model.train()
        bar = Progress(steps(epoch), total=total, desc=f"{name} epoch {epoch + 1}/{epochs}", every=30)
        loss_sum, count = 0.0, 0
        for loss in bar:
            loss_sum, count, iteration = loss_sum + loss, count + 1, iteration + 1
            bar.set(loss=loss_sum / count)
            logger.write(epoch=epoch, iter=epoch * 10_000 + iteration, loss=loss)
        logger.write(epoch=epoch, iter=(epoch + 1) * 10_000, loss_epoch=loss_sum / max(count, 1))
        save_checkpoint(ckpt, model=model, optimizer=optimizer, epoch=epoch)
    plot_curves(jsonl, os.path.join(folder, "plots", f"{name}.png"), keys=["loss_epoch"])
    return model.eval()


# ============================================================================ detection examples
# Shared by examples/snip/train.py and examples/sniper/train.py: plumbing only.

SINGLE_SCALE = (800, 1333)  # the single-scale baseline (thesis Table 3.3, first row)


def add_detection_args(p, out: str) -> None:
    """The flags every detection driver takes."""
    d = "(default: %(default)s)"
    p.add_argument("--out", default=out, help=f"output folder {d}")
    p.add_argument("--data", default=None, help="COCO-format root with train/{images,annotations.json} and "
                   "val/{images,annotations.json} (default: a synthetic set generated in OUT/data)")
    p.add_argument("--train-images", help="train image folder, overrides --data's layout (e.g. COCO's train2017/)")
    p.add_argument("--train-ann", help="train annotation JSON, overrides --data's layout")
    p.add_argument("--val-images", help="val image folder, overrides --data's layout")
    p.add_argument("--val-ann", help="val annotation JSON, overrides --data's layout")
    p.add_argument("--synthetic", type=int, nargs=2, default=(120, 30), metavar=("TRAIN", "VAL"),
                   help=f"synthetic images to generate when no --data is given {d}")
    p.add_argument("--synthetic-dir", help="where the synthetic set lives (default: OUT/data; share it between runs)")
    p.add_argument("--synthetic-draw", type=int, default=0, metavar="N",
                   help="which draw of the synthetic set (other images and boxes, the same distribution); one "
                        f"folder holds one draw {d}")
    p.add_argument("--size-scale", type=float, default=None,
                   help="multiplies every pixel size of the thesis (scales, ranges, chips); also the synthetic "
                        "set's resolution; boxes are evaluated in 1/SIZE_SCALE pixels so that COCO's small, "
                        "medium and large keep their meaning (default: 0.5 for synthetic data, 1 with --data)")
    p.add_argument("--train-limit", type=int, help="use only the first N training images (default: all)")
    p.add_argument("--val-limit", type=int, help="evaluate on the first N validation images (default: all)")
    p.add_argument("--minival", type=int, default=0, metavar="N",
                   help="the first N validation images choose the pyramid's test ranges (scalekit.scale.tune_ranges "
                        "over the training ranges widened by 1, 1.25, 1.5 and 2, and none, by AP); AP is then "
                        "reported on the other images only (default: %(default)s, the training ranges)")
    p.add_argument("--backbone", choices=("tiny", "premise", "premise_fpn", "resnet18", "resnet50", "resnet101"),
                   default="tiny",
                   help="tiny: a small conv net + FPN for CPUs; premise: single-level (stride 16), the body of "
                        "examples/snip/premise.py's CNN-B (initialise it with --init); premise_fpn: the same body "
                        f"with an FPN on its strides 4, 8 and 16; resnet*: torchvision ResNet-FPN {d}")
    p.add_argument("--init", metavar="PATH", help="--backbone premise or premise_fpn: start from this CNN-B checkpoint "
                   "(premise.py's cnn_b_*.pt, the 'ImageNet' of the synthetic data); every recipe of a comparison "
                   "from the same file (default: random weights)")
    p.add_argument("--render", choices=("today", "scale_true"), default="today",
                   help="the synthetic set's renderer: today's (detail at a fixed pixel period) or scale_true "
                        f"(a small object is a down-sampled large one; thesis §2.3) {d}")
    p.add_argument("--pretrained", action="store_true", help="ImageNet weights from torchvision for resnet* (downloaded "
                   "by torchvision on first use)")
    p.add_argument("--epochs", type=int, default=5, help=f"training epochs {d}")
    p.add_argument("--iterations", type=int, default=None, metavar="N",
                   help="the recipe's whole budget in SGD iterations at --batch-size, the same for every arm of a "
                        "comparison (overrides --epochs; the last epoch is cut where the budget ends; SNIPER's "
                        "RPN-only run counts in it)")
    p.add_argument("--eval-at", type=int, nargs="+", default=(), metavar="N",
                   help="also evaluate after these iterations: AP against budget, in results.json's 'budget'")
    p.add_argument("--max-iters", type=int, default=None, help="stop each epoch after N iterations (smoke tests)")
    p.add_argument("--batch-size", type=int, default=4, help=f"images or chips per iteration per process {d}")
    p.add_argument("--lr", type=float, default=0.02, help=f"SGD learning rate (momentum 0.9, wd 1e-4) {d}")
    p.add_argument("--warmup", type=int, default=100, help=f"linear warm-up iterations {d}")
    p.add_argument("--seed", type=int, default=0, help=f"seeds everything {d}")
    p.add_argument("--device", default="cpu", help=f"cpu, cuda or cuda:N {d}")
    p.add_argument("--amp", action="store_true", help="mixed precision (float16 on CUDA, bfloat16 on CPU)")
    p.add_argument("--workers", type=int, default=0, help=f"DataLoader worker processes {d}")
    p.add_argument("--log-every", type=int, default=5, help=f"log every N iterations {d}")
    p.add_argument("--resume", nargs="?", const="auto", default=None,
                   help="continue from a checkpoint (default path: OUT/checkpoint.pt); --epochs is the total")
    p.add_argument("--draw", type=int, default=4, help=f"validation images drawn with their detections {d}")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")


def add_test_level_arg(p) -> None:
    """``--test-level SHORT MAX``: evaluate at one scale, every detection kept (read by :func:`test_levels`)."""
    p.add_argument("--test-level", type=float, nargs=2, default=None, metavar=("SHORT", "MAX"),
                   help="evaluate at this one scale, every detection kept (Table 2.1 tests at 1400 2000) "
                        "(default: the recipe's levels)")


def test_levels(args, default):
    """The levels a detector is evaluated at: ``--test-level`` (one level, every object valid) or ``default``."""
    from scalekit.scale import AreaRange, ScaleSpec, scaled_levels

    if getattr(args, "test_level", None) is None:
        return default
    if min(args.test_level) <= 0:
        fail(f"--test-level sizes must be positive, got {args.test_level}")
    return scaled_levels(((ScaleSpec.shorter_side(*args.test_level), AreaRange()),), args.size_scale)


def check_detection_args(p, args) -> None:
    if args.size_scale is None:
        args.size_scale = 1.0 if args.data or args.train_ann else 0.5
    if args.size_scale <= 0:
        p.error("--size-scale must be positive")
    for name in ("epochs", "batch_size", "iterations"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.eval_at and (min(args.eval_at) < 1 or (args.iterations and max(args.eval_at) > args.iterations)):
        p.error(f"--eval-at must lie in 1..--iterations, got {list(args.eval_at)}")


def setup_detection(args):
    """Threads, torchrun, seeds, the output folder and the (train, val) datasets."""
    if args.threads:
        torch.set_num_threads(args.threads)
    args.dist = Distributed(args.device)
    args.main = args.dist.main
    seed_everything(args.seed + args.dist.rank)
    os.makedirs(args.out, exist_ok=True)
    train, val = load_detection_data(args)
    return limit(train, args.train_limit), limit(val, args.val_limit)


class TinyBackbone(torch.nn.Module):
    """A five-stage conv net with an FPN on strides 8, 16 and 32: small enough for a CPU."""

    def __init__(self, widths=(16, 32, 64, 96, 128), out_channels: int = 64):
        super().__init__()
        from torchvision.ops import FeaturePyramidNetwork

        layers, c = [], 3
        for w in widths:
            layers.append(torch.nn.Sequential(torch.nn.Conv2d(c, w, 3, stride=2, padding=1, bias=False),
                                              torch.nn.GroupNorm(8, w), torch.nn.ReLU(inplace=True),
                                              torch.nn.Conv2d(w, w, 3, padding=1, bias=False),
                                              torch.nn.GroupNorm(8, w), torch.nn.ReLU(inplace=True)))
            c = w
        self.stages = torch.nn.ModuleList(layers)
        self.fpn = FeaturePyramidNetwork(list(widths[2:]), out_channels)
        self.out_channels = out_channels

    def forward(self, x):
        from collections import OrderedDict

        maps = OrderedDict()
        for n, stage in enumerate(self.stages):
            x = stage(x)
            if n >= 2:
                maps[str(n - 2)] = x
        return self.fpn(maps)


class SingleLevelTinyBackbone(torch.nn.Module):
    """Three conv stages to stride 8 and 96 channels: a detector that trains in minutes on a CPU.

    BatchNorm, not GroupNorm: GroupNorm normalises each image's channel groups
    on their own and so removes the absolute colour that tells many of the
    synthetic classes apart (with it, neither the classifier nor the
    fine-grained branch learned anything in a few epochs).
    """

    def __init__(self, widths=(24, 48, 96), out_channels: int = 96):
        super().__init__()
        layers, c = [], 3
        for w in widths:
            layers += [torch.nn.Conv2d(c, w, 3, stride=2, padding=1, bias=False), torch.nn.BatchNorm2d(w),
                       torch.nn.ReLU(inplace=True), torch.nn.Conv2d(w, w, 3, padding=1, bias=False),
                       torch.nn.BatchNorm2d(w), torch.nn.ReLU(inplace=True)]
            c = w
        layers += [torch.nn.Conv2d(c, out_channels, 3, padding=1), torch.nn.ReLU(inplace=True)]
        self.body = torch.nn.Sequential(*layers)
        self.out_channels, self.stride = out_channels, 8

    def forward(self, x):
        return self.body(x)


PREMISE_MEAN, PREMISE_STD = 0.5, 0.25  # PremiseNet's input normalisation, (x - mean) / std on [0, 1] images


class PremiseNet(torch.nn.Module):
    """The networks of SNIP's premise experiment (``examples/snip/premise.py``, thesis §2.3), whose
    CNN-B initialises the single-level detectors (``--backbone premise --init``). ``body``: a stem,
    then three conv stages at strides 1, 2, 2, a single-level backbone with ``out_channels`` and
    ``stride``; ``head``: global average pooling and a linear layer. Inputs are normalised by
    :data:`PREMISE_MEAN` and :data:`PREMISE_STD`.

    ``stem_stride`` 4: ResNet's stem in small (7x7 stride-2 conv and 3x3 stride-2 max pooling),
    CNN-B's; 2: a 5x5 stride-2 conv; 1: a 3x3 stride-1 conv (CIFAR's), CNN-S's (thesis §2.3).
    """

    def __init__(self, num_classes: int, stem_stride: int = 4, widths=(16, 32, 64)):
        super().__init__()

        def block(c_in, c_out, k, s):
            return [torch.nn.Conv2d(c_in, c_out, k, s, k // 2, bias=False), torch.nn.BatchNorm2d(c_out),
                    torch.nn.ReLU(inplace=True)]

        stem = {4: block(3, widths[0], 7, 2) + [torch.nn.MaxPool2d(3, 2, 1)], 2: block(3, widths[0], 5, 2),
                1: block(3, widths[0], 3, 1)}[stem_stride]
        layers, c = stem, widths[0]
        for i, w in enumerate(widths):
            layers += block(c, w, 3, 1 if i == 0 else 2) + block(w, w, 3, 1)
            c = w
        self.body = torch.nn.Sequential(*layers)
        self.body.out_channels, self.body.stride = c, stem_stride * 4
        self.head = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                        torch.nn.Linear(c, num_classes))

    def forward(self, x):
        return self.head(self.body(x))


class PremiseFPN(torch.nn.Module):
    """CNN-B's ``body`` (:class:`PremiseNet`) with torchvision's FPN on the outputs of its three
    stages (strides 4, 8 and 16 for the stride-4 stem): the Table 2.1 detector's multi-level
    variant, whose RoIs are pooled from the level that matches their size (the scale
    normalisation FPN brings by itself, which SNIP's gain may then overlap). ``body`` keeps the
    checkpoint's module names, so :func:`load_premise_body` fills it."""

    def __init__(self, body: torch.nn.Sequential, out_channels: int = 64):
        super().__init__()
        from torchvision.ops import FeaturePyramidNetwork

        self.body = body
        convs = [i for i, m in enumerate(body) if isinstance(m, torch.nn.Conv2d)]
        # each stage is two conv-BN-ReLU blocks; a stage ends at the ReLU after its second conv
        self.ends = [convs[i] + 2 for i in range(2, len(convs), 2)]
        widths = [body[convs[i]].out_channels for i in range(2, len(convs), 2)]
        self.fpn = FeaturePyramidNetwork(widths, out_channels)
        self.out_channels = out_channels

    def forward(self, x):
        from collections import OrderedDict

        maps = OrderedDict()
        for i, module in enumerate(self.body):
            x = module(x)
            if i in self.ends:
                maps[str(len(maps))] = x
        return self.fpn(maps)


def single_level_backbone(name: str, deformable: bool = False, pretrained: bool = False):
    """A single-level backbone (one feature map, ``out_channels`` and ``stride`` attributes), the
    R-FCN detectors' (thesis ch. 4): ``"tiny"`` (stride 8) or a torchvision ResNet cut after conv4
    (stride 16), its last stage deformable with ``deformable``."""
    if name == "tiny":
        if pretrained:
            fail("--pretrained: the tiny backbone has no pretrained weights; use --backbone resnet18")
        return SingleLevelTinyBackbone()
    import torchvision

    try:
        resnet = getattr(torchvision.models, name)(weights="DEFAULT" if pretrained else None)
    except Exception as exc:  # no network: weights cannot be downloaded
        fail(f"--pretrained: could not load {name}'s ImageNet weights ({exc.__class__.__name__}: {exc})")
    if deformable:
        from scalekit.detection import deformable_resnet

        deformable_resnet(resnet, ("layer3",))  # the last stage kept (conv4): deformable, as D-R-FCN's conv5
    body = torch.nn.Sequential(*list(resnet.children())[:-3])  # conv4: stride 16
    last = resnet.layer3[-1]
    body.out_channels = (last.conv3 if hasattr(last, "conv3") else last.conv2).out_channels
    body.stride = 16
    return body


# The small CPU detectors' proposal and sampling settings (both tiny backbones).
SMALL_DETECTOR = dict(rpn_pre_nms_top_n_train=600, rpn_post_nms_top_n_train=300, rpn_pre_nms_top_n_test=600,
                      rpn_post_nms_top_n_test=300, rpn_batch_size_per_image=128, box_batch_size_per_image=128,
                      box_detections_per_img=100, box_score_thresh=0.001)


def load_premise_body(body: torch.nn.Module, path: str) -> None:
    """Copy a CNN-B checkpoint's ``body`` weights (``examples/snip/premise.py``) into ``body``, every
    tensor or a clear error (a checkpoint of another network is not silently half-loaded)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError) as exc:
        fail(f"--init {path}: cannot read it ({exc.__class__.__name__}: {exc})")
    if not isinstance(state, dict):
        fail(f"--init {path}: expected a state_dict (premise.py's cnn_b_*.pt), got {type(state).__name__}")
    weights = {k[len("body."):]: v for k, v in state.items() if k.startswith("body.")}
    own = body.state_dict()
    wrong = sorted(k for k in own if k not in weights or weights[k].shape != own[k].shape)
    if wrong or len(weights) != len(own):
        fail(f"--init {path}: not a CNN-B of this shape ({len(weights)} body tensors for {len(own)}; first "
             f"missing or misshapen: {wrong[:3]}); make it with examples/snip/premise.py")
    body.load_state_dict(weights)


def build_detector(backbone: str, num_classes: int, pretrained: bool, init: str | None = None):
    """A torchvision Faster R-CNN that keeps input sizes and honours ignore boxes and valid ranges.
    ``"premise"``: single-level, on the body of the premise experiment's CNN-B (``init``: its checkpoint),
    which sees images normalised as that experiment trained it; ``"premise_fpn"``: the same body with an
    FPN (:class:`PremiseFPN`), anchors 12-24 / 48-96 / 192-384 px on its three levels."""
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.ops import MultiScaleRoIAlign

    from scalekit.detection import honour_ignore_boxes, keep_input_size

    if init is not None and backbone not in ("premise", "premise_fpn"):
        fail(f"--init is for --backbone premise or premise_fpn (a CNN-B checkpoint), not {backbone}; "
             "resnet* take --pretrained")
    if backbone.startswith("premise") and pretrained:
        fail(f"--pretrained: the {backbone} backbone's weights come from --init PATH")
    if backbone in ("premise", "premise_fpn"):
        body = PremiseNet(1).body  # the classifier head is dropped
        if init is not None:
            load_premise_body(body, init)
        if backbone == "premise_fpn":  # the same body under an FPN, an anchor pair per level
            body, levels = PremiseFPN(body), ["0", "1", "2"]
            anchors = AnchorGenerator(((12, 24), (48, 96), (192, 384)), ((0.5, 1.0, 2.0),) * 3)
        else:
            levels, anchors = ["0"], AnchorGenerator(((12, 24, 48, 96, 192, 384),), ((0.5, 1.0, 2.0),))
        model = FasterRCNN(body, num_classes=None, rpn_anchor_generator=anchors,
                           box_roi_pool=MultiScaleRoIAlign(levels, 7, 2),
                           box_head=TwoMLPHead(body.out_channels * 49, 256),
                           box_predictor=FastRCNNPredictor(256, num_classes + 1),
                           image_mean=[PREMISE_MEAN] * 3, image_std=[PREMISE_STD] * 3, **SMALL_DETECTOR)
    elif backbone == "tiny":
        if pretrained:
            fail("--pretrained: the tiny backbone has no pretrained weights; use --backbone resnet50")
        body = TinyBackbone()
        anchors = AnchorGenerator(((12, 24), (48, 96), (192, 384)), ((0.5, 1.0, 2.0),) * 3)
        pool = MultiScaleRoIAlign(["0", "1", "2"], 7, 2)
        model = FasterRCNN(body, num_classes=None, rpn_anchor_generator=anchors, box_roi_pool=pool,
                           box_head=TwoMLPHead(body.out_channels * 49, 256),
                           box_predictor=FastRCNNPredictor(256, num_classes + 1), **SMALL_DETECTOR)
    else:
        from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

        weights = "DEFAULT" if pretrained else None
        body = resnet_fpn_backbone(backbone_name=backbone, weights=weights, trainable_layers=3 if pretrained else 5)
        model = FasterRCNN(body, num_classes=num_classes + 1, box_score_thresh=0.001)
    return keep_input_size(honour_ignore_boxes(model))


def prepare_synthetic(root: str, size_scale: float, counts=(120, 30), verbose: bool = True,
                      render: str = "today", draw: int = 0) -> str:
    """Generate the default synthetic train and val sets in ``root`` unless they are there; ``render``
    ``"scale_true"`` draws the same boxes with :func:`~scalekit.datasets.synthetic.make_synthetic_scale_true_coco`.
    ``draw`` picks the random draw (train and val seeded ``1000`` and ``2000`` plus ``draw * 2**20``);
    a folder holds one renderer and one draw, and a folder of another is refused."""
    from scalekit.datasets.synthetic import make_synthetic_coco, make_synthetic_scale_true_coco

    if isinstance(draw, bool) or not isinstance(draw, int) or not 0 <= draw < 1000:
        fail(f"--synthetic-draw must be an integer in [0, 1000), got {draw!r}")
    s = size_scale
    sizes = tuple((round(h * s), round(w * s)) for h, w in ((480, 640), (600, 800), (768, 1024), (1000, 750)))
    kw = dict(min_size=max(4, round(12 * s)), max_size=round(400 * s), image_sizes=sizes)
    if render == "scale_true":  # detail in periods per object (its default), not pixels
        make = make_synthetic_scale_true_coco
    else:
        make, kw["detail"] = make_synthetic_coco, max(2, round(6 * s))
    want = render if draw == 0 else f"{render}, draw {draw}"  # draw 0's marker is as before draws existed
    marker = os.path.join(root, "render.txt")  # one folder, one renderer and draw (none written: today's)
    made = open(marker).read().strip() if os.path.exists(marker) else None
    if made is None and os.path.exists(os.path.join(root, "train", "annotations.json")):
        made = "today"  # a folder from before the scale-true renderer
    if made is not None and made != want:
        fail(f"--synthetic-dir {root} holds the {made!r} synthetic images, not {want!r}; use another folder")
    if made is None:  # before any image, so that an interrupted run's folder is marked too
        os.makedirs(root, exist_ok=True)
        with open(marker, "w") as f:
            f.write(want)
    for split, n, seed in (("train", counts[0], 1000), ("val", counts[1], 2000)):
        if not os.path.exists(os.path.join(root, split, "annotations.json")):  # written last
            if verbose:
                print(f"generating {n} synthetic {split} images ({want}) into {root}/{split} ...", flush=True)
            make(os.path.join(root, split), num_images=n, seed=seed + draw * 2**20, **kw)
    return root


def load_detection_data(args):
    """(train, val) CocoDetection; generates the synthetic set on first use."""
    from scalekit.datasets import CocoDetection

    if args.data is None:
        root = args.synthetic_dir or os.path.join(args.out, "data")
        if args.main:
            prepare_synthetic(root, args.size_scale, args.synthetic, render=getattr(args, "render", "today"),
                              draw=args.synthetic_draw)
        args.dist.barrier()
    else:
        root = args.data
    paths = [(os.path.join(root, sp, "images"), os.path.join(root, sp, "annotations.json")) for sp in ("train", "val")]
    paths = [(args.train_images or paths[0][0], args.train_ann or paths[0][1]),
             (args.val_images or paths[1][0], args.val_ann or paths[1][1])]
    out = []
    for name, (images, ann) in zip(("train", "val"), paths):
        try:
            out.append(CocoDetection(images, ann))
        except (FileNotFoundError, ValueError) as exc:
            fail(f"--data ({name}): {exc}")
        if len(out[-1]) == 0:
            fail(f"--data ({name}): {ann} has no images")
    if out[0].label_to_category != out[1].label_to_category:
        fail("--data: train and val have different categories")
    return out


class _Subset(torch.utils.data.Subset):
    def annotations(self, i):
        return self.dataset.annotations(self.indices[i])


def subset(data, indices):
    """Images ``indices`` of a CocoDetection (or of a subset of one), keeping what evaluation reads."""
    indices = list(indices)
    s = _Subset(data, indices)
    s.coco, s.label_to_category, s.class_names = data.coco, data.label_to_category, data.class_names
    s.ids = [data.ids[i] for i in indices]
    return s


def limit(data, n):
    """The first ``n`` images of a CocoDetection (all for ``None``), keeping what evaluation reads."""
    return data if n is None or n >= len(data) else subset(data, range(n))


def _optimizer(args, model, iters_per_epoch, epochs, iterations=None):
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=args.lr, momentum=0.9, weight_decay=1e-4)
    total = max(1, iters_per_epoch * epochs if iterations is None else iterations)
    warmup = min(args.warmup, total // 4)

    def factor(step):  # linear warm-up, then a step down by 10 at 3/4 of training
        if step < warmup:
            return 0.1 + 0.9 * step / max(1, warmup)
        return 0.1 if step >= 0.75 * total else 1.0

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def fit(args, model, dataset, epochs: int, log, tag: str = "train", *, checkpoint: bool = True,
        iterations: int | None = None, after_step=None, **ddp_options):
    """SGD over ``dataset`` (its own ``collate_fn``; ``set_epoch`` each epoch), with resume
    from ``--resume`` and a checkpoint per epoch when ``checkpoint``. With ``iterations``
    the budget is that many SGD steps (as many epochs as it takes, the last one cut;
    the learning-rate schedule spans the budget) and ``epochs`` is ignored.
    ``after_step(iteration)`` runs after each step (e.g. an evaluation: it may leave
    the model in eval mode). Returns (items, seconds)."""
    from torch.utils.data import DataLoader, DistributedSampler

    sampler = DistributedSampler(dataset, shuffle=True, seed=args.seed) if args.dist.world_size > 1 else None
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=sampler is None, sampler=sampler,
                        num_workers=args.workers, collate_fn=dataset.collate_fn,
                        generator=torch.Generator().manual_seed(args.seed))
    per_epoch = len(loader) if args.max_iters is None else min(len(loader), args.max_iters)
    if iterations is not None:
        epochs = -(-iterations // max(1, per_epoch))
    core, model = model, args.dist.wrap(model, **ddp_options)
    optimizer, scheduler = _optimizer(args, model, per_epoch, epochs, iterations)
    start, done_seconds, done_items = 0, 0.0, 0
    if checkpoint and args.resume:
        path = os.path.join(args.out, "checkpoint.pt") if args.resume == "auto" else args.resume
        state = load_checkpoint(path, model=core, optimizer=optimizer, scheduler=scheduler, map_location=args.dist.device)
        if state["extra"].get("recipe", args.recipe) != args.recipe:
            fail(f"--resume: {path} was trained with --recipe {state['extra']['recipe']}, not {args.recipe}")
        start, done_seconds = state["epoch"], state["extra"].get("train_seconds", 0.0)
        done_items = state["extra"].get("train_items", 0)
        if args.main:
            print(f"resumed from {path} at epoch {start}", flush=True)
    scaler = torch.amp.GradScaler("cuda", enabled=args.amp and args.dist.device.type == "cuda")
    items, seconds, it = done_items, done_seconds, start * per_epoch
    for epoch in range(start, epochs):
        model.train()
        if hasattr(dataset, "set_epoch") and epoch > 0:
            dataset.set_epoch(epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
        bar = Progress(loader, desc=f"{tag} epoch {epoch + 1}/{epochs}", quiet=not args.main)
        t0 = time.perf_counter()
        for n, (images, targets) in enumerate(bar):
            if (args.max_iters is not None and n >= args.max_iters) or (iterations is not None and it >= iterations):
                break
            images = [im.to(args.dist.device) for im in images]
            keys = ("boxes", "labels", "ignore_boxes", "valid_range")
            targets = [{k: v.to(args.dist.device) for k, v in t.items() if k in keys} for t in targets]
            with autocast(args.dist.device, args.amp):
                losses = model(images, targets)
            loss = sum(losses.values())
            if not torch.isfinite(loss):
                fail(f"{tag}: the loss became {loss.item()} at epoch {epoch + 1}, iteration {n}; lower --lr")
            optimizer.zero_grad()
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            items += len(images)
            it += 1
            bar.set(loss=float(loss.detach()))
            if args.main and it % args.log_every == 0:
                log.write(phase=tag, epoch=epoch, iter=it, lr=optimizer.param_groups[0]["lr"], loss=float(loss.detach()),
                          **{k: float(v.detach()) for k, v in losses.items()})
            if after_step is not None:
                t1 = time.perf_counter()
                after_step(it)
                model.train()
                t0 += time.perf_counter() - t1  # not training time
        seconds += time.perf_counter() - t0
        if args.main and checkpoint:
            save_checkpoint(os.path.join(args.out, "checkpoint.pt"), model=core, optimizer=optimizer,
                            scheduler=scheduler, epoch=epoch + 1, recipe=args.recipe, train_seconds=seconds,
                            train_items=items)
            plot_curves(log.path, os.path.join(args.out, "loss.png"))
        args.dist.barrier()
    return items, seconds


def budget_curve(args, model, val, levels, spent: int = 0):
    """``(after_step, curve)`` for :func:`fit`: after each iteration of ``--eval-at``
    the model is evaluated as at the end (:func:`evaluate_detector`, nothing drawn) and
    ``{"iteration", "AP", "AP50", "APs", ...}`` is appended to ``curve``: AP against budget.

    ``spent``: iterations of the budget spent before this model's first step (SNIPER's
    RPN-only run); ``--eval-at`` counts the whole budget, so a point at or before ``spent``
    finds the detector untrained and is recorded with NaN figures."""
    curve, at = [], set(args.eval_at)
    for it in sorted(i for i in at if i <= spent):
        curve.append({"iteration": it, **{k: math.nan for k in ("AP", "AP50", "APs", "APm", "APl")},
                      "note": "the RPN-only run still had the budget"})

    def after_step(it):
        if it + spent in at and args.main:
            stats, _ = evaluate_detector(args, model, val, levels, draw=0, save=False)
            curve.append({"iteration": it + spent, **{k: v for k, v in stats.items() if k != "per_class"}})
            print(f"iteration {it + spent}: AP {stats['AP']:.3f} APs {stats['APs']:.3f}", flush=True)

    return after_step, curve


@torch.no_grad()
def evaluate_detector(args, model, val, levels, draw: int | None = None, save: bool = True):
    """COCO metrics of the pyramid's detections on ``val`` (in 1 / size_scale pixels); (stats, seconds per image).
    The first ``draw`` images (default ``--draw``) are drawn with their detections; with ``save`` the
    detections are kept in OUT/detections.pt (``{image_id: {"boxes", "scores", "labels"}}``, image pixels)."""
    draw = args.draw if draw is None else draw
    from scalekit.scale import Pyramid

    model.eval()
    pyramid, tuned = Pyramid(levels), None
    if getattr(args, "minival", 0) and len(levels) > 1:
        if args.minival >= len(val):
            fail(f"--minival {args.minival} leaves no test images of the {len(val)} validation images")
        pyramid, tuned = tune_test_ranges(args, model, subset(val, range(args.minival)), pyramid)
        val = subset(val, range(args.minival, len(val)))
    predictions, seconds = {}, 0.0
    for i in Progress(range(len(val)), desc="evaluate", quiet=not args.main):
        image, target = val[i]
        start = time.perf_counter()
        det = pyramid.detect(model, image.to(args.dist.device))
        seconds += time.perf_counter() - start
        predictions[int(target["image_id"])] = {k: v.cpu() for k, v in det.items()}
        if i < draw:
            draw_detections(image, predictions[int(target["image_id"])], target["boxes"], val.class_names,
                            os.path.join(args.out, f"detections_{i:03d}.png"))
    stats = coco_stats(args, val, predictions)
    if save:  # per image, for statistics over images later (a paired bootstrap between two runs)
        torch.save(predictions, os.path.join(args.out, "detections.pt"))
    if tuned is not None:
        stats["test_ranges"] = tuned
    return stats, seconds / max(1, len(val))


def coco_pair(predictions: dict, gt: dict, label_to_category: dict, size_scale: float) -> tuple[list, dict]:
    """(COCO results, COCO ground truth) of ``{image_id: detections}`` and those images of the COCO
    dict ``gt``, both in 1 / size_scale pixels: COCO's small / medium / large (32 and 96 pixels) then
    mean the thesis' object sizes."""
    from scalekit.evaluation import to_coco_results

    f = 1.0 / size_scale
    results = to_coco_results({i: {**d, "boxes": d["boxes"] * f} for i, d in predictions.items()}, label_to_category)
    keep = set(predictions)
    gt = {**gt, "images": [{**im, "width": im["width"] * f, "height": im["height"] * f}
                           for im in gt["images"] if im["id"] in keep],
          "annotations": [{**a, "bbox": [v * f for v in a["bbox"]], "area": a["area"] * f * f}
                          for a in gt["annotations"] if a["image_id"] in keep]}
    return results, gt


def coco_stats(args, val, predictions: dict) -> dict:
    """COCO metrics of ``{image_id: detections}`` against those images of ``val`` (:func:`coco_pair`)."""
    from scalekit.evaluation import coco_evaluate

    return coco_evaluate(*coco_pair(predictions, val.coco.dataset, val.label_to_category, args.size_scale))


TEST_RANGE_WIDENINGS = (1.0, 1.25, 1.5, 2.0)


def tune_test_ranges(args, model, minival, pyramid):
    """The pyramid with the test ranges that give the best AP on ``minival`` (one detector pass,
    :func:`scalekit.scale.tune_ranges`): the training ranges widened by each of
    :data:`TEST_RANGE_WIDENINGS` (``lo / w``, ``hi * w``), or no ranges at all. Returns (pyramid, record)."""
    from scalekit.scale import AreaRange, tune_ranges

    trained = [area for _, area in pyramid.levels]
    candidates = [[AreaRange(a.lo / w, a.hi * w) for a in trained] for w in TEST_RANGE_WIDENINGS]
    candidates.append([AreaRange()] * len(trained))
    open_ = pyramid.with_ranges(candidates[-1])
    images = [minival[i] for i in range(len(minival))]
    per_level = [open_.detect_levels(model, image.to(args.dist.device))
                 for image, _ in Progress(images, desc="minival", quiet=not args.main)]
    ids = [int(t["image_id"]) for _, t in images]
    best, scores = tune_ranges(pyramid, per_level, candidates,
                               lambda merged: coco_stats(args, minival, dict(zip(ids, merged)))["AP"])
    names = [f"x{w:g}" for w in TEST_RANGE_WIDENINGS] + ["none"]
    choice = names[scores.index(max(scores))]
    if args.main:
        print(f"minival ({len(minival)} images) AP by test ranges: "
              + ", ".join(f"{n} {v:.3f}" for n, v in zip(names, scores)) + f" -> {choice}", flush=True)
    return best, {"choice": choice, "minival_images": len(minival), "minival_AP": dict(zip(names, scores)),
                  "ranges": [[a.lo, a.hi] for _, a in best.levels]}


def draw_detections(image, det, gt_boxes, names, path, min_score: float = 0.3, top: int = 50) -> None:
    """A picture of one image: ground truth in white, detections above ``min_score`` in colour."""
    from PIL import Image, ImageDraw

    picture = Image.fromarray((image.clamp(0, 1) * 255).byte().permute(1, 2, 0).cpu().numpy())
    draw = ImageDraw.Draw(picture)
    for box in gt_boxes.tolist():
        draw.rectangle(box, outline="white")
    colours = ["#ff3030", "#30ff30", "#3080ff", "#ffff30", "#ff30ff", "#30ffff"]
    for k in (det["scores"] >= min_score).nonzero().flatten()[:top].tolist():
        label = int(det["labels"][k])
        box = det["boxes"][k].tolist()
        draw.rectangle(box, outline=colours[label % len(colours)], width=2)
        draw.text((box[0] + 2, box[1] + 1), f"{names[label - 1]} {float(det['scores'][k]):.2f}",
                  fill=colours[label % len(colours)])
    picture.save(path)


def detection_results(args, recipe: str, dataset, train, val, stats, infer, items, seconds, **extra) -> dict:
    """results.json and the one-line summary every detection driver prints."""
    result = {"recipe": recipe, "seed": args.seed, "epochs": args.epochs, "iterations": args.iterations,
              "batch_size": args.batch_size, "backbone": args.backbone,
              "synthetic_draw": args.synthetic_draw if args.data is None else None,
              "size_scale": args.size_scale, "train_images": len(train), "val_images": len(val),
              "inputs_per_epoch": len(dataset), "train_pixels_per_image": dataset.pixels / len(train),
              "train_inputs_per_s": items / seconds if seconds > 0 else None, "train_seconds": seconds,
              "inference_s_per_image": infer,
              "coco": {k: v for k, v in stats.items() if k not in ("per_class", "test_ranges")},
              "test_ranges": stats.get("test_ranges"),
              "device": str(args.dist.device), "threads": torch.get_num_threads(), **extra}
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(result, f, indent=1)
    c = result["coco"]
    print(f"{recipe}: AP {c['AP']:.3f} AP50 {c['AP50']:.3f} APs {c['APs']:.3f} APm {c['APm']:.3f} "
          f"APl {c['APl']:.3f} | ARs {c['ARs']:.3f} ARm {c['ARm']:.3f} ARl {c['ARl']:.3f} | "
          f"{result['train_pixels_per_image'] / 1e3:.0f}k px/image, {infer * 1e3:.0f} ms/image inference", flush=True)
    return result
