"""SNIPER's chip pipeline on a synthetic dataset (``make demo``).

Generates (on first run, seeded) a COCO-format dataset with objects from 8 to
400 px, plans positive and negative chips for every image, and prints chips
per image, pixels relative to single-scale training at 800x1333, coverage of
the valid ground truth and timing; writes pictures of the chips of a few
images (thesis Figure 3.1) and a few chip crops to ``runs/demo/``.

    python examples/sniper/chips_demo.py [--images 60] [--out runs/demo]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch
from PIL import Image

from scalekit.chips import ChipGenerator, chip_stats, crop_chip, draw_chips
from scalekit.datasets import CocoDetection
from scalekit.datasets.synthetic import make_synthetic_coco


def progress(i: int, n: int, start: float) -> None:
    done = int(30 * i / n)
    rate = i / max(time.perf_counter() - start, 1e-9)
    sys.stdout.write(f"\r  [{'#' * done}{'.' * (30 - done)}] {i}/{n} images, {rate:,.0f} images/s")
    sys.stdout.flush()


def fake_proposals(boxes: torch.Tensor, size, rng: np.random.Generator) -> torch.Tensor:
    """Stand-in for a short-trained RPN: boxes near the objects and on clutter."""
    h, w = size
    near = boxes.repeat(3, 1) + torch.from_numpy(rng.normal(0, 6, (3 * len(boxes), 4))).float()
    near = torch.cat([torch.minimum(near[:, :2], near[:, 2:]), torch.maximum(near[:, :2], near[:, 2:])], 1)  # jitter may flip a small box
    xy = rng.uniform(0, 1, (120, 2)) * [w, h]
    wh = np.exp(rng.uniform(np.log(12), np.log(200), (120, 2)))
    clutter = torch.from_numpy(np.concatenate([xy, xy + wh], 1)).float()
    return torch.cat([near, clutter])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=60, help="synthetic images to generate")
    parser.add_argument("--out", default="runs/demo", help="output folder")
    parser.add_argument("--pictures", type=int, default=4, help="images to draw")
    args = parser.parse_args()

    data = os.path.join(args.out, "data")
    ann = os.path.join(data, "annotations.json")
    if not os.path.exists(ann):
        print(f"generating {args.images} synthetic images into {data} (seed 0) ...", flush=True)
        make_synthetic_coco(data, num_images=args.images, seed=0)
    dataset = CocoDetection(os.path.join(data, "images"), ann)
    gen = ChipGenerator()
    print(f"{gen}\nplanning chips for {len(dataset)} images:", flush=True)

    rng = np.random.default_rng(0)
    annotations, chips_per_image = [], []
    start = time.perf_counter()
    for i in range(len(dataset)):
        boxes, _, size = dataset.annotations(i)
        proposals = fake_proposals(boxes, size, rng)
        chips_per_image.append(gen.generate(boxes, size, proposals, np.random.default_rng(i)))
        annotations.append((boxes, size, proposals))
        progress(i + 1, len(dataset), start)
    elapsed = time.perf_counter() - start
    print()

    stats = chip_stats(gen, annotations)
    print("\n  statistic                         synthetic   thesis (COCO)")
    print(f"  chips per image (pos + neg)       {stats['chips_per_image']:9.2f}   ~5")
    print(f"  positive chips per image          {stats['pos_chips_per_image']:9.2f}")
    print(f"  pixels vs single scale 800x1333   {stats['pixel_ratio']:9.2f}x  ~1.3x")
    print(f"  valid boxes covered               {stats['coverage']:9.1%}   100%")
    print(f"  chip planning                     {elapsed / len(dataset) * 1e3:9.2f} ms per image\n")

    os.makedirs(args.out, exist_ok=True)
    for i in range(min(args.pictures, len(dataset))):
        image, target = dataset[i]
        path = os.path.join(args.out, f"chips_{i:03d}.png")
        draw_chips(image, chips_per_image[i], target["boxes"], path)
        pixels, chip_target = crop_chip(image, target, chips_per_image[i][0], gen.chip_size)
        crop_path = os.path.join(args.out, f"chip_{i:03d}_0.png")
        Image.fromarray((pixels.clamp(0, 1) * 255).byte().permute(1, 2, 0).numpy()).save(crop_path)
        print(f"  wrote {path} ({len(chips_per_image[i])} chips) and {crop_path} "
              f"({len(chip_target['boxes'])} valid and {len(chip_target['ignore_boxes'])} ignore boxes in the first chip)")


if __name__ == "__main__":
    main()
