"""Regenerate the pictures of the guide pages: ``python docs/make_figures.py``.

* ``_static/sniper_chips.jpg``: SNIPER's positive and negative chips on a
  synthetic image (the thesis' Figure 3.1).
"""

import os
import tempfile

import numpy as np
import torch

from scalekit.chips import ChipGenerator, draw_chips
from scalekit.datasets import CocoDetection, make_synthetic_coco

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


if __name__ == "__main__":
    sniper_chips(os.path.join(HERE, "_static", "sniper_chips.jpg"))
