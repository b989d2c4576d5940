"""The flow-magnitude tracker of MSB-RNN (thesis §5.3.1): a fixed-size box that
follows the moving person, and person-centric crops."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["FlowTracker", "crop_boxes"]


class FlowTracker:
    """A fixed-size box moved, once per chunk, to where the flow magnitude inside it is largest.

    The sum of the flow magnitude over every box position comes from an
    integral image (one vectorised expression, no loop over positions); the
    box moves to the best position when that sum reaches ``threshold`` and
    stays put otherwise (nothing moves: the person is still).

    Args:
        box_size: ``(height, width)`` of the box, in pixels.
        threshold: the smallest summed magnitude (pixels of flow x pixels of
            area) that moves the box.

    Example:
        >>> import torch
        >>> flows = torch.zeros(2, 2, 40, 60)
        >>> flows[0, 0, 10:20, 30:40] = 3.0  # chunk 0: something moves at (30..40, 10..20)
        >>> FlowTracker((10, 10), threshold=50).track(flows)  # chunk 1: nothing moves, the box stays
        tensor([[30., 10., 40., 20.],
                [30., 10., 40., 20.]])
    """

    def __init__(self, box_size: tuple[int, int], threshold: float) -> None:
        self.box_h, self.box_w = int(box_size[0]), int(box_size[1])
        if self.box_h <= 0 or self.box_w <= 0:
            raise ValueError(f"box_size must be positive, got {box_size}")
        self.threshold = float(threshold)

    def best(self, magnitude: Tensor) -> tuple[int, int, float]:
        """Top-left ``(x, y)`` of the box with the largest summed ``[H, W]`` magnitude, and that sum."""
        h, w = magnitude.shape
        if self.box_h > h or self.box_w > w:
            raise ValueError(f"box {self.box_h}x{self.box_w} does not fit the {h}x{w} frame")
        integral = F.pad(magnitude.double().cumsum(0).cumsum(1), (1, 0, 1, 0))
        bh, bw = self.box_h, self.box_w
        sums = integral[bh:, bw:] - integral[:-bh, bw:] - integral[bh:, :-bw] + integral[:-bh, :-bw]
        flat = int(sums.argmax())
        y, x = divmod(flat, sums.shape[1])
        return x, y, float(sums[y, x])

    def track(self, flows: Tensor, init: tuple[int, int] | None = None) -> Tensor:
        """Per-chunk boxes ``[T, 4]`` ``(x1, y1, x2, y2)`` from per-chunk flows ``[T, 2, H, W]``
        (or flow magnitudes ``[T, H, W]``). ``init``: the box's starting top-left
        (default: centred)."""
        mags = flows if flows.dim() == 3 else flows.float().norm(dim=1)
        h, w = mags.shape[-2:]
        x, y = init if init is not None else ((w - self.box_w) // 2, (h - self.box_h) // 2)
        boxes = []
        for m in mags:
            bx, by, total = self.best(m)
            if total >= self.threshold:
                x, y = bx, by
            boxes.append([x, y, x + self.box_w, y + self.box_h])
        return torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)


def crop_boxes(frames: Tensor, boxes: Tensor, size: tuple[int, int] | None = None) -> Tensor:
    """Person-centric crops: frame ``i`` cropped to ``boxes[i]`` (clipped to the
    frame, zero-padded past it) and resized to ``size``.

    Args:
        frames: ``[T, C, H, W]``.
        boxes: ``[T, 4]`` integer-valued ``(x1, y1, x2, y2)``.
        size: output ``(h, w)``; default: the box size.

    Returns:
        ``[T, C, h, w]``.
    """
    t, c, h, w = frames.shape
    out = []
    for frame, box in zip(frames, boxes.round().long().tolist()):
        x1, y1, x2, y2 = box
        crop = frame.new_zeros((c, y2 - y1, x2 - x1))
        sx1, sy1, sx2, sy2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
        if sx2 > sx1 and sy2 > sy1:
            crop[:, sy1 - y1 : sy2 - y1, sx1 - x1 : sx2 - x1] = frame[:, sy1:sy2, sx1:sx2]
        if size is not None and tuple(crop.shape[-2:]) != tuple(size):
            crop = F.interpolate(crop[None].float(), size=size, mode="bilinear", align_corners=False)[0].to(frame.dtype)
        out.append(crop)
    return torch.stack(out)
