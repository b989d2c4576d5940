"""What every example's training script needs, written once: a progress bar
with ETA, a JSONL log and a PNG of the loss curves, checkpoints that resume
(loaded with ``weights_only=True``), ``torchrun`` set-up, seeding and mixed
precision. Standard library, torch, Pillow and :mod:`scalekit.progress`.

Scripts in ``examples/<system>/`` import it with::

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import common
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import sys
from collections.abc import Iterable

import numpy as np
import torch
import torch.distributed as dist

from scalekit.progress import Progress  # noqa: F401  (re-exported: the examples' bar is the library's)

__all__ = ["Progress", "JsonlLog", "plot_curves", "save_checkpoint", "load_checkpoint", "Distributed",
           "seed_everything", "autocast", "fail", "import_script", "seed_stat", "mean_spread", "split_passthrough"]


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
