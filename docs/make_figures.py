"""Regenerate the pictures of the guide pages: ``python docs/make_figures.py``.

* ``_static/sniper_chips.jpg``: SNIPER's positive and negative chips on a
  synthetic image (the thesis' Figure 3.1).
* ``_static/trajectories.png``: pixel trajectories vs stacked flow for one
  chunk of a rotating pattern (the thesis' Figure 5.3).
"""

import math

import os
import tempfile

import numpy as np
import torch

from scalekit.chips import ChipGenerator, draw_chips
from scalekit.datasets import CocoDetection
from scalekit.datasets.synthetic import make_synthetic_coco

HERE = os.path.dirname(os.path.abspath(__file__))


def sniper_chips(path: str) -> None:
    root = tempfile.mkdtemp()
    dataset = CocoDetection(*make_synthetic_coco(root, num_images=2, seed=0))
    image, target = dataset[1]
    boxes, size = target["boxes"], tuple(image.shape[1:])
    g = np.random.default_rng(0)
    xy = g.uniform(0, 1, (150, 2)) * [size[1], size[0]]
    proposals = torch.tensor(np.concatenate([xy, xy + np.exp(g.uniform(2.5, 5, (150, 2)))], 1), dtype=torch.float32)
    chips = ChipGenerator().generate(boxes, size, proposals, np.random.default_rng(0))
    draw_chips(image, chips, boxes, path)


def trajectories(path: str, size=(48, 64), omega=0.12, k=3, step=8, zoom=8) -> None:
    """Green: where a point of frame t really goes (pixel trajectories).
    Red: the stacked flows summed at the same pixel, which drift off the point."""
    from PIL import Image, ImageDraw

    from scalekit.video import pixel_trajectories, stacked_flow

    h, w = size
    cx, cy = w / 2, h / 2
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")

    def flow(a, b):  # exact rotation between the frames (each frame carries its index)
        d = int(b[0, 0, 0]) - int(a[0, 0, 0])
        ang = omega * d
        px, py = xs - cx, ys - cy
        return torch.stack([math.cos(ang) * px - math.sin(ang) * py - px,
                            math.sin(ang) * px + math.cos(ang) * py - py]).float()

    frames = torch.zeros(2 * k + 1, 1, h, w)
    frames[:, 0, 0, 0] = torch.arange(2 * k + 1, dtype=torch.float32)
    traj = pixel_trajectories(frames, k, k, flow)
    stacked = stacked_flow(frames, k, k, flow)
    canvas = Image.new("RGB", (w * zoom, h * zoom), "white")
    draw = ImageDraw.Draw(canvas)
    for y in range(step // 2, h, step):
        for x in range(step // 2, w, step):
            true = [(x + float(traj[0, j, y, x]), y + float(traj[1, j, y, x])) for j in range(k, 2 * k)]
            acc, drift = [0.0, 0.0], []
            for j in range(k, 2 * k):
                acc = [acc[0] + float(stacked[0, j, y, x]), acc[1] + float(stacked[1, j, y, x])]
                drift.append((x + acc[0], y + acc[1]))
            for points, colour in ((drift, (220, 40, 40)), (true, (30, 160, 60))):
                draw.line([(px * zoom, py * zoom) for px, py in [(x, y)] + points], fill=colour, width=3)
            draw.ellipse([x * zoom - 3, y * zoom - 3, x * zoom + 3, y * zoom + 3], fill="black")
    canvas.save(path)


if __name__ == "__main__":
    sniper_chips(os.path.join(HERE, "_static", "sniper_chips.jpg"))
    trajectories(os.path.join(HERE, "_static", "trajectories.png"))
