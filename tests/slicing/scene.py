"""A deterministic fake detector for sliced detection: it reads where its input lies in
the image from the pixels (the image encodes every pixel's coordinates), and returns
the fixed objects of a seeded scene as that window sees them — clipped at the window's
border, with a score that depends on the window. The same function serves scalekit
and SAHI, so both see the same detections for the same windows."""

from __future__ import annotations

import numpy as np
import torch


def coordinate_image(height: int, width: int) -> torch.Tensor:
    """``[3, H, W]`` uint8 image whose pixel (y, x) encodes x and y (H, W <= 4096)."""
    assert height <= 4096 and width <= 4096
    y = torch.arange(height).view(-1, 1).expand(height, width)
    x = torch.arange(width).view(1, -1).expand(height, width)
    return torch.stack([x % 256, y % 256, x // 256 + 16 * (y // 256)]).to(torch.uint8)


def origin(image: torch.Tensor) -> tuple[int, int]:
    """``(x, y)`` in the coordinate image of the top-left pixel of ``image`` ([3, H, W],
    float in [0, 1] or uint8)."""
    px = image[:, 0, 0]
    px = (px * 255).round().long() if px.is_floating_point() else px.long()
    c0, c1, c2 = px.tolist()
    return c0 + 256 * (c2 % 16), c1 + 256 * (c2 // 16)


class Scene:
    """``n`` objects (boxes 6-120 px, labels 1..3, base scores) in an ``height x width`` image."""

    def __init__(self, height: int, width: int, n: int = 40, seed: int = 0):
        rng = np.random.default_rng(seed)
        size = rng.uniform(6, 120, (n, 2))
        x1 = rng.uniform(0, width - size[:, 0])
        y1 = rng.uniform(0, height - size[:, 1])
        self.boxes = np.round(np.stack([x1, y1, x1 + size[:, 0], y1 + size[:, 1]], 1)).astype(np.float64)
        self.labels = rng.integers(1, 4, n)
        self.scores = rng.uniform(0.5, 0.95, n)
        self.calls: list[tuple[int, int, int, int]] = []

    def detect_window(self, x0: int, y0: int, h: int, w: int):
        """The objects a window sees: (boxes in window pixels, scores, labels), numpy."""
        self.calls.append((x0, y0, h, w))
        b = self.boxes
        vis = np.stack([np.maximum(b[:, 0], x0), np.maximum(b[:, 1], y0),
                        np.minimum(b[:, 2], x0 + w), np.minimum(b[:, 3], y0 + h)], 1)
        vis_area = np.clip(vis[:, 2] - vis[:, 0], 0, None) * np.clip(vis[:, 3] - vis[:, 1], 0, None)
        frac = vis_area / ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))
        keep = frac >= 0.2  # a sliver of an object at the border is not found
        k = np.nonzero(keep)[0]
        jitter = ((x0 * 73856093) ^ (y0 * 19349663) ^ (k * 83492791) ^ (h * 2654435761)) % 100003 / 100003 * 0.05  # differs per window
        scores = self.scores[k] * (0.6 + 0.4 * frac[k]) - jitter
        boxes = vis[k] - np.array([x0, y0, x0, y0], dtype=np.float64)
        return boxes.astype(np.float32), scores.astype(np.float32), self.labels[k].astype(np.int64)

    def __call__(self, image: torch.Tensor):
        """scalekit's callable detector: ``[3, h, w]`` float image -> (boxes, scores, labels)."""
        x0, y0 = origin(image)
        boxes, scores, labels = self.detect_window(x0, y0, *image.shape[-2:])
        return torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(labels)
