"""The flow-magnitude tracker of MSB-RNN (thesis §5.3.1): a fixed-size box that
follows the moving person, and person-centric crops."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from scalekit._args import integer, real

__all__ = ["FlowTracker", "crop_boxes"]


class FlowTracker:
    """A fixed-size box moved, once per chunk, to where the flow magnitude inside it is largest.

    The sum of the flow magnitude over every box position comes from an
    integral image (one vectorised expression, no loop over positions); the
    box moves to the best position when that sum reaches ``threshold`` and
    stays put otherwise (nothing moves: the person is still).

    Flow must be finite: a chunk whose flow holds NaN or infinity (a flow
    estimator that failed, a frame that was not decoded) is an error naming
    the chunk, never a box — holding the box still there would report a
    confident track from no information.

    Args:
        box_size: ``(height, width)`` of the box, in pixels (positive integers).
        threshold: the smallest summed magnitude (pixels of flow x pixels of
            area) that moves the box; finite, ``>= 0``.

    Example:
        >>> import torch
        >>> flows = torch.zeros(2, 2, 40, 60)
        >>> flows[0, 0, 10:20, 30:40] = 3.0  # chunk 0: something moves at (30..40, 10..20)
        >>> FlowTracker((10, 10), threshold=50).track(flows)  # chunk 1: nothing moves, the box stays
        tensor([[30., 10., 40., 20.],
                [30., 10., 40., 20.]])
    """

    def __init__(self, box_size: tuple[int, int], threshold: float) -> None:
        if not hasattr(box_size, "__len__") or len(box_size) != 2:
            raise ValueError(f"box_size must be (height, width), got {box_size!r}")
        self.box_h = integer("box_size[0] (height)", box_size[0], minimum=1)
        self.box_w = integer("box_size[1] (width)", box_size[1], minimum=1)
        self.threshold = real("threshold", threshold, minimum=0.0)

    def __repr__(self) -> str:
        return f"FlowTracker(box_size=({self.box_h}, {self.box_w}), threshold={self.threshold})"

    def best(self, magnitude: Tensor) -> tuple[int, int, float]:
        """Top-left ``(x, y)`` of the box with the largest summed ``[H, W]`` magnitude, and that sum."""
        if not isinstance(magnitude, Tensor) or magnitude.dim() != 2:
            got = list(magnitude.shape) if isinstance(magnitude, Tensor) else type(magnitude).__name__
            raise ValueError(f"magnitude must be an [H, W] tensor, got {got}")
        if not torch.isfinite(magnitude).all():
            raise ValueError("magnitude must be finite (NaN or infinite flow: the flow estimator failed here)")
        h, w = magnitude.shape
        if self.box_h > h or self.box_w > w:
            raise ValueError(f"box_size {self.box_h}x{self.box_w} does not fit the {h}x{w} frame")
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
        if not isinstance(flows, Tensor) or not (flows.dim() == 3 or (flows.dim() == 4 and flows.shape[1] == 2)):
            got = list(flows.shape) if isinstance(flows, Tensor) else type(flows).__name__
            raise ValueError(f"flows must be [T, 2, H, W] flows or [T, H, W] magnitudes, got {got}")
        if flows.is_complex() or not (flows.is_floating_point() or flows.dtype in (torch.uint8, torch.int16,
                                                                                    torch.int32, torch.int64)):
            raise TypeError(f"flows must be real numbers, got {flows.dtype}")
        finite = torch.isfinite(flows).flatten(1).all(1)
        if not finite.all():
            t = int((~finite).nonzero()[0])
            raise ValueError(f"flows[{t}] holds NaN or infinite values (the flow estimator failed on chunk {t}): "
                             "no track can be read from it; fix or drop that chunk's flow")
        mags = flows if flows.dim() == 3 else flows.float().norm(dim=1)
        h, w = mags.shape[-2:]
        if self.box_h > h or self.box_w > w:
            raise ValueError(f"box_size {self.box_h}x{self.box_w} does not fit the {h}x{w} frame")
        if init is None:
            x, y = (w - self.box_w) // 2, (h - self.box_h) // 2
        else:
            if not hasattr(init, "__len__") or len(init) != 2:
                raise ValueError(f"init must be the box's top-left (x, y), got {init!r}")
            x, y = integer("init[0] (x)", init[0]), integer("init[1] (y)", init[1])
            if not (0 <= x <= w - self.box_w and 0 <= y <= h - self.box_h):
                raise ValueError(f"init {(x, y)} puts the {self.box_h}x{self.box_w} box outside the {h}x{w} frame: "
                                 f"x must lie in [0, {w - self.box_w}], y in [0, {h - self.box_h}]")
        boxes = []
        for m in mags:
            bx, by, total = self.best(m)
            if total >= self.threshold:
                x, y = bx, by
            boxes.append([x, y, x + self.box_w, y + self.box_h])
        return torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)


def crop_boxes(frames: Tensor, boxes: Tensor, size: tuple[int, int] | None = None) -> Tensor:
    """Person-centric crops: frame ``i`` cropped to ``boxes[i]`` (clipped to the
    frame, zero-padded past it) and resized to ``size`` (bilinear).

    Args:
        frames: ``[T, C, H, W]``, any dtype (a resized crop is interpolated in
            float32 and cast back).
        boxes: ``[T, 4]`` ``(x1, y1, x2, y2)`` in the frames' pixels, finite,
            rounded to whole pixels, ``x2 > x1`` and ``y2 > y1`` after rounding
            (as :class:`FlowTracker` gives); a box may reach at most one frame's
            size past each edge (``-W <= x1``, ``x2 <= 2W``, the same in y):
            farther is an error, most likely boxes in another scale.
        size: output ``(h, w)``; default: the box size, which must then be the
            same for every box. A crop is cut at its box's size, then resized.

    Returns:
        ``[T, C, h, w]`` (``T = 0`` gives ``[0, C, h, w]``, or ``[0, C, 0, 0]``
        without ``size``).

    Example:
        >>> import torch
        >>> frames = torch.arange(2 * 16.).reshape(2, 1, 4, 4)
        >>> crop_boxes(frames, torch.tensor([[0., 0, 2, 2], [3, 3, 5, 5]]))[:, 0].tolist()
        [[[0.0, 1.0], [4.0, 5.0]], [[31.0, 0.0], [0.0, 0.0]]]
    """
    if not isinstance(frames, Tensor) or frames.dim() != 4:
        got = list(frames.shape) if isinstance(frames, Tensor) else type(frames).__name__
        raise ValueError(f"frames must be a [T, C, H, W] tensor, got {got}")
    t, c, h, w = frames.shape
    if size is not None:
        if not hasattr(size, "__len__") or len(size) != 2:
            raise ValueError(f"size must be (h, w), got {size!r}")
        size = (integer("size[0]", size[0], minimum=1), integer("size[1]", size[1], minimum=1))
    if not isinstance(boxes, Tensor) or boxes.dim() != 2 or boxes.shape != (t, 4):
        got = list(boxes.shape) if isinstance(boxes, Tensor) else type(boxes).__name__
        raise ValueError(f"boxes must be a [T, 4] = [{t}, 4] tensor (one box per frame), got {got}")
    if boxes.is_complex() or boxes.dtype == torch.bool:
        raise TypeError(f"boxes must be real numbers, got {boxes.dtype}")
    if t == 0:
        return frames.new_zeros((0, c, *(size if size is not None else (0, 0))))
    finite = torch.isfinite(boxes).all(1)
    if not finite.all():
        i = int((~finite).nonzero()[0])
        raise ValueError(f"boxes[{i}] is not finite: {boxes[i].tolist()}")
    rounded = boxes.double().round()
    empty = (rounded[:, 2] <= rounded[:, 0]) | (rounded[:, 3] <= rounded[:, 1])
    if empty.any():
        i = int(empty.nonzero()[0])
        raise ValueError(f"boxes[{i}] = {boxes[i].tolist()} is empty after rounding to pixels: need x2 > x1, y2 > y1")
    far = (rounded[:, 0] < -w) | (rounded[:, 1] < -h) | (rounded[:, 2] > 2 * w) | (rounded[:, 3] > 2 * h)
    if far.any():
        i = int(far.nonzero()[0])
        raise ValueError(f"boxes[{i}] = {boxes[i].tolist()} reaches more than a frame's size past the {h}x{w} frame: "
                         "boxes are (x1, y1, x2, y2) in the frames' pixels (normalised or rescaled boxes?)")
    sizes = torch.stack([rounded[:, 3] - rounded[:, 1], rounded[:, 2] - rounded[:, 0]], 1)
    if size is None and not (sizes == sizes[0]).all():
        i = int((sizes != sizes[0]).any(1).nonzero()[0])
        raise ValueError(f"boxes of different sizes ({sizes[0].long().tolist()} and {sizes[i].long().tolist()} "
                         f"at box {i}) need size=(h, w) to resize the crops to")
    out = []
    for frame, box in zip(frames, rounded.long().tolist()):
        x1, y1, x2, y2 = box
        crop = frame.new_zeros((c, y2 - y1, x2 - x1))
        sx1, sy1, sx2, sy2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
        if sx2 > sx1 and sy2 > sy1:
            crop[:, sy1 - y1 : sy2 - y1, sx1 - x1 : sx2 - x1] = frame[:, sy1:sy2, sx1:sx2]
        if size is not None and tuple(crop.shape[-2:]) != tuple(size):
            crop = F.interpolate(crop[None].float(), size=size, mode="bilinear", align_corners=False)[0].to(frame.dtype)
        out.append(crop)
    return torch.stack(out)
