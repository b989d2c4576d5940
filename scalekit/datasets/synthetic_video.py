"""A seeded synthetic untrimmed video: a textured disc performing scripted
fine-grained actions with known intervals, still in between."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["make_synthetic_video", "SYNTHETIC_ACTIONS"]

SYNTHETIC_ACTIONS = ("move_left", "move_right", "move_up", "move_down")
_DIRECTIONS = {0: (-1, 0), 1: (1, 0), 2: (0, -1), 3: (0, 1)}


def make_synthetic_video(num_chunks: int = 40, chunk_len: int = 6, size=(72, 96), seed: int = 0,
                         speed: float = 1.5, radius: int = 8) -> dict:
    """An untrimmed video whose actions start and end on chunk boundaries.

    Segments alternate: background (the disc is still, 1-4 chunks) and an
    action (2-5 chunks) of a random class from :data:`SYNTHETIC_ACTIONS`,
    during which the disc moves ``speed`` px per frame in its direction
    (bouncing off the borders).

    Returns:
        A dict with ``"frames"`` (``[T, 3, H, W]`` float in ``[0, 1]``),
        ``"chunk_labels"`` (``[num_chunks]``: 0 background, ``c + 1`` for
        action ``c``), ``"ground_truth"`` (``{"labels", "segments"}`` with
        inclusive frame ranges, as MPII/MERL) and ``"centres"`` (``[T, 2]``,
        the disc's ``(x, y)``).

    Example:
        >>> from scalekit.datasets import make_synthetic_video
        >>> v = make_synthetic_video(num_chunks=10, seed=1)
        >>> v["frames"].shape, v["chunk_labels"].shape
        (torch.Size([60, 3, 72, 96]), torch.Size([10]))
    """
    rng = np.random.default_rng(seed)
    h, w = size
    chunk_labels = []
    while len(chunk_labels) < num_chunks:
        chunk_labels += [0] * int(rng.integers(1, 5))
        chunk_labels += [int(rng.integers(len(SYNTHETIC_ACTIONS))) + 1] * int(rng.integers(2, 6))
    chunk_labels = chunk_labels[:num_chunks]
    background = rng.uniform(0.2, 0.5, (3, h // 4 + 1, w // 4 + 1)).repeat(4, 1).repeat(4, 2)[:, :h, :w]
    texture = rng.uniform(0.6, 1.0, (3, 2 * radius + 1, 2 * radius + 1))
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    disc = xx**2 + yy**2 <= radius**2
    x, y = w / 2, h / 2
    frames, centres = [], []
    for t in range(num_chunks * chunk_len):
        label = chunk_labels[t // chunk_len]
        if label:
            dx, dy = _DIRECTIONS[label - 1]
            x = float(np.clip(x + dx * speed, radius, w - radius - 1))
            y = float(np.clip(y + dy * speed, radius, h - radius - 1))
        frame = background.copy()
        cx, cy = int(round(x)), int(round(y))
        patch = frame[:, cy - radius : cy + radius + 1, cx - radius : cx + radius + 1]
        patch[:, disc] = texture[:, disc]
        frames.append(frame)
        centres.append((x, y))
    labels, segments = [], []
    start = None
    for i, label in enumerate(chunk_labels + [0]):
        if start is not None and (label != chunk_labels[start] or i == num_chunks):
            labels.append(chunk_labels[start] - 1)
            segments.append([start * chunk_len, i * chunk_len - 1])
            start = None
        if label and start is None and i < num_chunks:
            start = i
    return {
        "frames": torch.tensor(np.stack(frames), dtype=torch.float32),
        "chunk_labels": torch.tensor(chunk_labels),
        "ground_truth": {"labels": np.asarray(labels, dtype=np.int64),
                         "segments": np.asarray(segments, dtype=np.float64).reshape(-1, 2)},
        "centres": torch.tensor(centres),
    }
