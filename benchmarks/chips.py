"""Chip generation throughput (one core) on COCO-like statistics, and chips per
image / pixel ratio on the synthetic dataset.

COCO-like: 640x480 images, a geometric number of boxes (mean 7, at most 100),
sizes log-uniform in 8-400 px, aspect 1:2-2:1, inside the image. The peer is
"plain vectorised numpy": the same greedy, testing every (box, window) pair
each pick instead of the separable x/y containment.
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


def run(quick: bool = False) -> None:
    torch.set_num_threads(1)
    gen = ChipGenerator()
    images = coco_like_boxes(300 if quick else 2000)
    t0 = time.perf_counter()
    chips = sum(len(gen.positive_chips(b, (480, 640))) for b in images)
    ours = (time.perf_counter() - t0) / len(images)
    t0 = time.perf_counter()
    peer_chips = sum(len(plain_numpy_positive_chips(gen, b, (480, 640))) for b in images)
    theirs = (time.perf_counter() - t0) / len(images)
    table = Table("positive chips, one core, COCO-like 640x480 (time per image; target >= 5,000 images/s)",
                  "plain numpy")
    table.row(f"positive_chips ({1 / ours:,.0f} vs {1 / theirs:,.0f} images/s)", torch.device("cpu"), ours, theirs)
    print(f"chips per image: {chips / len(images):.2f} (plain greedy: {peer_chips / len(images):.2f})")

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


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    run(parser.parse_args().quick)
