"""FocusPixels: the training labels of AutoFocus's focus branch (Najibi, Singh
and Davis, *AutoFocus: Efficient Multi-Scale Inference*, ICCV 2019, §4.1)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from scalekit._args import integer, real
from scalekit.boxes import _check_boxes, box_size

__all__ = ["focus_labels", "grid_size"]

POSITIVE, NEGATIVE, IGNORE = 1, 0, -1


def grid_size(image_size, stride: int = 16) -> tuple[int, int]:
    """The ``(ceil(H / stride), ceil(W / stride))`` cells of the focus grid of an ``H x W`` image.

    Example:
        >>> grid_size((512, 500))
        (32, 32)
    """
    h, w = _image_size(image_size)
    stride = integer("stride", stride, minimum=1)
    return -(-h // stride), -(-w // stride)


def _image_size(image_size) -> tuple[int, int]:
    if isinstance(image_size, (str, bytes)) or not hasattr(image_size, "__len__") or len(image_size) != 2:
        raise TypeError(f"image_size must be (height, width), got {image_size!r}")
    h, w = (integer("image_size", v, minimum=1) for v in image_size)
    return h, w


def focus_labels(boxes: Tensor, image_size, *, stride: int = 16, small: float = 64.0, ignore_below: float = 5.0,
                 ignore_until: float = 90.0, reference_size: float = 512.0) -> Tensor:
    """FocusPixel labels of one chip: ``1`` where a small object lies, ``-1`` ignored, ``0`` negative.

    The chip is cut into cells of ``stride x stride`` pixels (the stride of the
    feature map the focus head reads: 16, conv4 of the paper's ResNet). Each
    object's size is ``sqrt(area)`` of its part inside the chip, in chip pixels
    (:func:`scalekit.boxes.box_size`), and it marks every cell from
    ``floor(x1 / stride)`` to ``ceil(x2 / stride)`` *inclusive* (and the same in
    y, clipped to the grid: the original code's extent, one cell more on the
    right and bottom than the cells the box touches):

    * ``ignore_below < size < small``: positive (a FocusPixel, 1);
    * ``size <= ignore_below`` (tiny) or ``small <= size < ignore_until`` (the
      band between small and large): ignored (-1), no loss either way;
    * ``size >= ignore_until`` (large) and cells no object marks: negative (0).

    The paper's and the released code's thresholds are 5 / 64 / 90 pixels for
    512 x 512 chips (SNIPER's ``AUTO_FOCUS_DC_LOW`` / ``SMALL_THRESH`` /
    ``DC_HIGH``); here they **scale with the chip**: each is multiplied by
    ``max(H, W) / reference_size`` (1 for a 512-px chip, 0.5 for a 256-px one),
    so that the same objects are "small" in a chip of any resolution.

    Two choices where the original code's result depends on annotation order or
    on a side effect: a cell marked positive by one object and ignored by
    another is **positive** (the original keeps whichever object comes last);
    and objects with no part inside the chip mark nothing (the original clips
    them to a zero-size box on the chip's edge and ignores the cells there).
    Boxes are in continuous chip pixels (the original rounds them to integers).

    Args:
        boxes: ``[N, 4]`` float objects ``(x1, y1, x2, y2)`` in chip pixels (valid
            and ignored ground truth alike: every object counts by its size).
        image_size: the chip's ``(H, W)`` in pixels.
        stride: pixels per cell.
        small, ignore_below, ignore_until: the thresholds at a ``reference_size`` chip,
            ``0 <= ignore_below < small <= ignore_until`` (``ignore_until`` may be ``inf``).
        reference_size: the chip size the thresholds are given for (512).

    Returns:
        ``[ceil(H / stride), ceil(W / stride)]`` int64 labels in ``{-1, 0, 1}``, on the device of ``boxes``.

    Example:
        >>> import torch
        >>> boxes = torch.tensor([[40.0, 40, 60, 60],      # 20 px: small, positive
        ...                       [0, 90, 128, 128],       # 70 px: between small and large, ignored
        ...                       [100, 0, 104, 3]])       # 3.5 px: tiny, ignored
        >>> focus_labels(boxes, (128, 128), stride=32, reference_size=128)  # thresholds 5, 64, 90 at 128 px
        tensor([[ 0,  0,  0, -1],
                [ 0,  1,  1, -1],
                [-1,  1,  1, -1],
                [-1, -1, -1, -1]])
    """
    _check_boxes(boxes, "boxes")
    if not boxes.is_floating_point():
        raise TypeError(f"boxes must be a floating point tensor, got {boxes.dtype}")
    if not bool(torch.isfinite(boxes).all()):
        raise ValueError("boxes must be finite (x1, y1, x2, y2), got NaN or infinite coordinates")
    h, w = _image_size(image_size)
    stride = integer("stride", stride, minimum=1)
    small, lo = real("small", small, positive=True), real("ignore_below", ignore_below, minimum=0.0)
    hi = float(ignore_until) if isinstance(ignore_until, (int, float)) and ignore_until == math.inf \
        else real("ignore_until", ignore_until, positive=True)
    reference = real("reference_size", reference_size, positive=True)
    if not lo < small <= hi:
        raise ValueError(f"the thresholds must satisfy ignore_below < small <= ignore_until, got ignore_below={lo}, "
                         f"small={small}, ignore_until={hi}")
    gh, gw = -(-h // stride), -(-w // stride)
    labels = torch.zeros(gh, gw, dtype=torch.int64, device=boxes.device)
    if boxes.shape[0] == 0:
        return labels
    limit = torch.tensor([w, h, w, h], dtype=boxes.dtype, device=boxes.device)
    clipped = torch.minimum(boxes.clamp(min=0), limit)
    inside = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    t = max(h, w) / reference
    size = box_size(clipped)
    positive = inside & (size > lo * t) & (size < small * t)
    ignored = inside & ((size <= lo * t) | ((size >= small * t) & (size < hi * t)))
    first = torch.floor(clipped[:, :2] / stride)
    last = torch.ceil(clipped[:, 2:] / stride)
    ys = torch.arange(gh, device=boxes.device, dtype=boxes.dtype)
    xs = torch.arange(gw, device=boxes.device, dtype=boxes.dtype)
    rows = (ys[None] >= first[:, 1:2]) & (ys[None] <= last[:, 1:2])  # [N, gh]
    cols = (xs[None] >= first[:, 0:1]) & (xs[None] <= last[:, 0:1])  # [N, gw]
    covered = rows[:, :, None] & cols[:, None, :]  # [N, gh, gw]
    labels[(covered & ignored[:, None, None]).any(0)] = IGNORE
    labels[(covered & positive[:, None, None]).any(0)] = POSITIVE
    return labels
