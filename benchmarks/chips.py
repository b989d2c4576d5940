"""Chip generation throughput (one core) on COCO-like statistics, and chips per
image / pixel ratio on the synthetic dataset.

COCO-like: 640x480 images, a geometric number of boxes (mean 7, at most 100),
sizes log-uniform in 8-400 px, aspect 1:2-2:1, inside the image. The peer is
"plain vectorised numpy": the same greedy, testing every (box, window) pair
each pick instead of the separable x/y containment; with ``--sniper-repo`` also
SNIPER's own generator (C++ behind Cython, the released code), at strides 32
(the thesis) and 56 (the released code draws 56-59). The sides take turns and
each keeps its fastest pass, so a shared machine's load hits them alike.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from benchmarks._common import Table
from scalekit.chips import ChipGenerator
from scalekit.chips.generator import _positions


def coco_like_boxes(n_images: int, seed: int = 0, size=(480, 640)) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    h, w = size
    out = []
    for _ in range(n_images):
        n = min(100, int(rng.geometric(1 / 7)))
        s = np.exp(rng.uniform(np.log(8), np.log(400), n))
        r = rng.uniform(0.5, 2.0, n)
        bw, bh = np.minimum(s * np.sqrt(r), w), np.minimum(s / np.sqrt(r), h)
        x, y = rng.uniform(0, 1, n) * (w - bw), rng.uniform(0, 1, n) * (h - bh)
        out.append(np.stack([x, y, x + bw, y + bh], 1))
    return out


def plain_numpy_positive_chips(gen: ChipGenerator, boxes: np.ndarray, size) -> list:
    """The straightforward vectorised greedy: a [boxes, windows] containment
    matrix; returns (level, window in original pixels, member indices) per chip."""
    h, w = size
    chips = []
    for spec, area in gen.levels:
        f = spec.factor(h, w)
        s = boxes * f
        side = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
        left = (side >= area.lo) & (side < area.hi)
        xs, ys = _positions(w * f, gen.chip_size, gen.stride), _positions(h * f, gen.chip_size, gen.stride)
        wx, wy = (a.ravel() for a in np.meshgrid(xs, ys, indexing="ij"))
        inside = ((wx[None] <= s[:, :1]) & (s[:, 2:3] <= wx[None] + gen.chip_size) &
                  (wy[None] <= s[:, 1:2]) & (s[:, 3:4] <= wy[None] + gen.chip_size))
        left &= inside.any(1)
        valid = left.copy()
        while left.any():
            best = int(np.argmax(inside[left].sum(0)))
            left &= ~inside[:, best]
            window = np.array([wx[best], wy[best], wx[best] + gen.chip_size, wy[best] + gen.chip_size]) / f
            chips.append((len(chips), window, np.flatnonzero(valid & inside[:, best])))
    return chips


def build_original(sniper_repo: str) -> object:
    """SNIPER's own chip generator (``lib/chips``: C++ behind Cython), built unchanged
    from a checkout or a bare clone of github.com/mahyarnajibi/SNIPER into
    ``~/.cache/scalekit/sniper_chips`` (needs Cython and a C++ compiler)."""
    import importlib.util
    import os
    import subprocess
    import sys

    out = os.path.expanduser("~/.cache/scalekit/sniper_chips")
    os.makedirs(out, exist_ok=True)
    for name in ("cchips.cpp", "cchips.h", "chips.pyx"):
        path = os.path.join(sniper_repo, "lib", "chips", name)
        if os.path.exists(path):
            with open(path, "rb") as f:
                text = f.read()
        else:  # a bare clone
            git_dir = sniper_repo if os.path.isdir(os.path.join(sniper_repo, "objects")) else os.path.join(sniper_repo, ".git")
            text = subprocess.run(["git", "--git-dir", git_dir, "show", f"HEAD:lib/chips/{name}"],
                                  check=True, capture_output=True).stdout
        with open(os.path.join(out, name), "wb") as f:
            f.write(text)
    with open(os.path.join(out, "build.py"), "w") as f:
        f.write("import numpy\nfrom Cython.Build import cythonize\nfrom setuptools import Extension, setup\n"
                "setup(ext_modules=cythonize([Extension('chips', ['chips.pyx', 'cchips.cpp'], language='c++', "
                "include_dirs=[numpy.get_include()])]), script_args=['build_ext', '--inplace'])\n")
    subprocess.run([sys.executable, "build.py"], cwd=out, check=True, capture_output=True)
    so = next(os.path.join(out, n) for n in os.listdir(out) if n.startswith("chips.") and n.endswith(".so"))
    spec = importlib.util.spec_from_file_location("chips", so)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def original_positive_chips(original, gen: ChipGenerator, boxes: np.ndarray, size) -> list:
    """SNIPER's per-image chip extraction around its compiled greedy: per level, the
    boxes of the level's range scaled to the level, on a canvas of int(w * f) x int(h * f)."""
    from scalekit.boxes import size_in_range

    h, w = size
    chips = []
    for spec, area in gen.levels:
        f = spec.factor(h, w)
        valid = size_in_range(boxes, area.lo, area.hi)
        found = original.generate(np.ascontiguousarray(boxes[valid] * f, dtype=np.float32),
                                  int(w * f), int(h * f), gen.chip_size, gen.stride)
        chips += [np.array(c) / f for c in found]
    return chips


def interleaved(sides: dict, images, rounds: int) -> dict:
    """Per side, the least time per image over ``rounds`` passes, the sides taking
    turns pass by pass (a shared machine's load hits them alike)."""
    best = dict.fromkeys(sides, float("inf"))
    for _ in range(rounds):
        for name, fn in sides.items():
            t0 = time.perf_counter()
            for b in images:
                fn(b)
            best[name] = min(best[name], (time.perf_counter() - t0) / len(images))
    return best


def run(quick: bool = False, sniper_repo: str | None = None) -> None:
    torch.set_num_threads(1)
    size = (480, 640)
    images = coco_like_boxes(300 if quick else 2000)
    original = build_original(sniper_repo) if sniper_repo else None
    for stride in (32, 56):
        gen = ChipGenerator(stride=stride)
        sides = {"ours": lambda b: gen.positive_chips(b, size),
                 "plain": lambda b: plain_numpy_positive_chips(gen, b, size)}
        if original is not None:
            sides["original"] = lambda b: original_positive_chips(original, gen, b, size)
        t = interleaved(sides, images, rounds=3 if quick else 5)
        table = Table(f"positive chips, stride {stride}, one core, COCO-like 640x480 (time per image)", "peer")
        for peer, name in (("plain", "plain numpy greedy"), ("original", "SNIPER's C++ (lib/chips)")):
            if peer in t:
                table.row(f"vs {name} ({1 / t['ours']:,.0f} vs {1 / t[peer]:,.0f} images/s)",
                          torch.device("cpu"), t["ours"], t[peer])
        chips = sum(len(gen.positive_chips(b, size)) for b in images)
        peer_chips = sum(len(plain_numpy_positive_chips(gen, b, size)) for b in images)
        print(f"chips per image: {chips / len(images):.2f} (plain greedy: {peer_chips / len(images):.2f}"
              + (f", SNIPER's: {sum(len(original_positive_chips(original, gen, b, size)) for b in images) / len(images):.2f}"
                 if original is not None else "") + ")")
    gen = ChipGenerator()

    import tempfile

    from scalekit.chips import chip_stats
    from scalekit.datasets import CocoDetection
    from scalekit.datasets.synthetic import make_synthetic_coco

    dataset = CocoDetection(*make_synthetic_coco(tempfile.mkdtemp(), num_images=20 if quick else 100, seed=0))
    stats = chip_stats(gen, [dataset.annotations(i)[::2] for i in range(len(dataset))])
    print(f"synthetic dataset ({stats['images']} images, positive chips only): "
          f"{stats['chips_per_image']:.2f} chips/image (thesis, COCO with negatives: ~5), "
          f"{stats['pixel_ratio']:.2f}x the pixels of single-scale 800x1333 (thesis: ~1.3x), "
          f"coverage {stats['coverage']:.0%}")


def add_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("chips")
    group.add_argument("--sniper-repo", metavar="DIR",
                       help="a checkout (or bare clone) of github.com/mahyarnajibi/SNIPER: also time its own C++ chip "
                            "generator, built unchanged with Cython")


def options_from(args: argparse.Namespace) -> dict:
    return {"sniper_repo": args.sniper_repo}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    add_options(parser)
    args = parser.parse_args()
    run(args.quick, **options_from(args))
