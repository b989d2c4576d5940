"""FocusChips: rectangles around the FocusPixels of a focus map, where the next,
finer scale runs (AutoFocus, Najibi, Singh and Davis, ICCV 2019, §4.2).

Everything is tensor arithmetic on the map's device (no OpenCV, no copy to
the host but the few scalars that end a loop): threshold, dilation by max
pooling, connected components by label propagation with pointer jumping,
boxes by scatter-reductions, merging by a pairwise overlap graph."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from scalekit._args import integer, real
from scalekit.autofocus.labels import _image_size

__all__ = ["label_components", "focus_chips"]


def _neighbour_max(lab: Tensor) -> Tensor:
    """Each cell's largest value over its 3 x 3 neighbourhood (integers, any device)."""
    h, w = lab.shape
    p = F.pad(lab, (1, 1, 1, 1))
    out = lab
    for dy in range(3):
        for dx in range(3):
            out = torch.maximum(out, p[dy:dy + h, dx:dx + w])
    return out


def label_components(mask: Tensor) -> Tensor:
    """The 8-connected components of a 2-D mask: ``0`` outside, ``1..K`` inside.

    8-connectivity is what OpenCV's contour tracing, which the released
    AutoFocus code uses, follows. Components are numbered in the raster order
    (row by row) of their *last* cell. Runs on the mask's device: each round
    gives every cell the largest index in its 3 x 3 neighbourhood, then jumps
    each cell to the label of the cell its label names, until nothing changes.

    Args:
        mask: ``[H, W]`` bool (or any dtype; nonzero is inside).

    Returns:
        ``[H, W]`` int64 labels on the device of ``mask``.

    Example:
        >>> import torch
        >>> mask = torch.tensor([[1, 0, 0, 1],
        ...                      [0, 1, 0, 0],
        ...                      [0, 0, 0, 1]])
        >>> label_components(mask)  # the diagonal pair is one component
        tensor([[2, 0, 0, 1],
                [0, 2, 0, 0],
                [0, 0, 0, 3]])
    """
    if not isinstance(mask, Tensor) or mask.dim() != 2:
        shape = list(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
        raise ValueError(f"mask must be a 2-D [H, W] tensor, got {shape}")
    h, w = mask.shape
    inside = mask != 0
    if h * w == 0:
        return torch.zeros(h, w, dtype=torch.int64, device=mask.device)
    index = torch.arange(1, h * w + 1, device=mask.device, dtype=torch.int64).reshape(h, w)
    lab = torch.where(inside, index, 0)
    # Invariant: an inside cell's label is 1 + the index of a cell of its component whose own label
    # is at least as large; so jumping (lab[p] <- lab[lab[p] - 1]) never leaves the component and
    # never lowers a label. At the fixed point each component holds 1 + its largest index.
    while True:
        new = torch.where(inside, _neighbour_max(lab), 0)
        flat = new.reshape(-1)
        for _ in range(2):
            flat = torch.where(flat > 0, flat[(flat - 1).clamp(min=0)], 0)
        new = flat.reshape(h, w)
        if torch.equal(new, lab):
            break
        lab = new
    _, compact = torch.unique(lab, return_inverse=True)
    return compact if not bool(inside.all()) else compact + 1


def _boxes_of(labels: Tensor) -> Tensor:
    """``[K, 4]`` int64 half-open cell boxes ``(x1, y1, x2, y2)`` of components ``1..K``."""
    k = int(labels.max()) if labels.numel() else 0
    if k == 0:
        return torch.zeros(0, 4, dtype=torch.int64, device=labels.device)
    h, w = labels.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=labels.device), torch.arange(w, device=labels.device),
                            indexing="ij")
    lab, xs, ys = labels.reshape(-1), xs.reshape(-1), ys.reshape(-1)
    big = torch.full((k + 1,), h + w, dtype=torch.int64, device=labels.device)
    small = torch.full((k + 1,), -1, dtype=torch.int64, device=labels.device)
    x1 = big.scatter_reduce(0, lab, xs, "amin")
    y1 = big.scatter_reduce(0, lab, ys, "amin")
    x2 = small.scatter_reduce(0, lab, xs, "amax") + 1
    y2 = small.scatter_reduce(0, lab, ys, "amax") + 1
    return torch.stack([x1, y1, x2, y2], 1)[1:]


def _grow(boxes: Tensor, min_cells: int, gw: int, gh: int) -> Tensor:
    """Boxes grown about their centre to at least ``min_cells`` per side, shifted inside the grid, clipped to it."""
    out = []
    for lo, hi, extent in ((0, 2, gw), (1, 3, gh)):
        size = boxes[:, hi] - boxes[:, lo]
        grown = size.clamp(min=min_cells)
        start = boxes[:, lo] + size // 2 - grown // 2  # the original's integer centring
        start = torch.where(start + grown > extent, (extent - grown).clamp(min=0), start)
        start = start.clamp(min=0)
        out.append((start, (start + grown).clamp(max=extent)))
    (x1, x2), (y1, y2) = out
    return torch.stack([x1, y1, x2, y2], 1)


def _touching(boxes: Tensor) -> Tensor:
    """``[K, K]`` bool: the half-open cell boxes overlap or share an edge or a corner."""
    return ((boxes[:, None, 0] <= boxes[None, :, 2]) & (boxes[None, :, 0] <= boxes[:, None, 2])
            & (boxes[:, None, 1] <= boxes[None, :, 3]) & (boxes[None, :, 1] <= boxes[:, None, 3]))


def _merge(boxes: Tensor, min_cells: int, gw: int, gh: int) -> Tensor:
    """Grow, then merge every group of touching boxes into its bounding box, until no two touch."""
    while True:
        boxes = _grow(boxes, min_cells, gw, gh)
        k = boxes.shape[0]
        graph = _touching(boxes)
        if int(graph.sum()) == k:  # only the diagonal
            return boxes
        group = torch.arange(k, device=boxes.device)
        while True:  # connected components of the touch graph: each box takes its group's largest index
            new = torch.where(graph, group[None, :], -1).amax(1)
            if torch.equal(new, group):
                break
            group = new
        _, group = torch.unique(group, return_inverse=True)
        n = int(group.max()) + 1
        lo = torch.full((n, 2), 2 ** 62, dtype=boxes.dtype, device=boxes.device)
        hi = torch.full((n, 2), -(2 ** 62), dtype=boxes.dtype, device=boxes.device)
        lo = lo.scatter_reduce(0, group[:, None].expand(-1, 2), boxes[:, :2], "amin")
        hi = hi.scatter_reduce(0, group[:, None].expand(-1, 2), boxes[:, 2:], "amax")
        boxes = torch.cat([lo, hi], 1)


def focus_chips(focus: Tensor, image_size, *, threshold: float = 0.02, dilation: int = 3, min_chip: int = 16,
                stride: int = 16) -> Tensor:
    """FocusChips of one focus map: where the next scale should look, in the map's image pixels.

    1. cells with focus probability ``>= threshold`` are in (only the
       ``ceil(H / stride) x ceil(W / stride)`` cells of the image: a padded map's
       extra cells are cut);
    2. dilated by a ``dilation x dilation`` square (OpenCV's anchor: the window
       reaches ``dilation // 2`` cells up and left; 1 is none);
    3. each 8-connected component (:func:`label_components`) gives its bounding box;
    4. each box grows about its centre to at least ``min_chip`` cells a side
       (the released code's integer centring), shifted back inside the grid
       where it would cross the image's edge;
    5. boxes that overlap or touch (share an edge or a corner, as the
       8-connected regions of the original's mask do) merge into their
       bounding box, and 4-5 repeat until no two chips overlap or touch — the
       original repeats a fixed-point loop on the count of contours instead;
    6. cells become pixels (``x stride``), clipped to the image (a chip at the
       right or bottom edge may so be up to ``stride - 1`` pixels under the
       minimum, where the original shifts it left and lets it overlap).

    The released defaults, from the coarsest scale to the next: threshold
    0.02, dilation 3, minimum chip 16 cells; from the middle scale to the
    finest: 0.2, 3, 20 (``CHIP_HYPERPARAMS`` of SNIPER's AutoFocus config).

    Args:
        focus: ``[h, w]`` focus probability per cell (any float dtype, any device),
            ``h >= ceil(H / stride)`` and ``w >= ceil(W / stride)``.
        image_size: ``(H, W)`` of the image the map was computed on, in pixels.
        threshold: probability from which a cell is a FocusPixel.
        dilation: side of the dilation square, in cells (>= 1).
        min_chip: the smallest chip side, in cells (>= 1).
        stride: pixels per cell.

    Returns:
        ``[K, 4]`` float32 chips ``(x1, y1, x2, y2)`` in the pixels of the image the
        map was computed on, on the map's device; no two overlap or touch.

    Example:
        >>> import torch
        >>> focus = torch.zeros(32, 40)
        >>> focus[5, 6] = 0.5   # one FocusPixel near the top left
        >>> focus_chips(focus, (512, 640))  # 3 x 3 after dilation, grown to 16 x 16 cells, shifted inside
        tensor([[  0.,   0., 256., 256.]])
        >>> focus[20:22, 30:32] = 0.9
        >>> focus_chips(focus, (512, 640), min_chip=4)  # two chips, the first grown from 3 x 3 to 4 x 4 cells
        tensor([[ 64.,  48., 128., 112.],
                [464., 304., 528., 368.]])
    """
    if not isinstance(focus, Tensor) or focus.dim() != 2:
        shape = list(focus.shape) if isinstance(focus, Tensor) else type(focus).__name__
        raise ValueError(f"focus must be a 2-D [h, w] map, got {shape}")
    if not focus.is_floating_point():
        raise TypeError(f"focus must be a float map of probabilities, got {focus.dtype}")
    h, w = _image_size(image_size)
    threshold = real("threshold", threshold)
    dilation = integer("dilation", dilation, minimum=1)
    min_chip = integer("min_chip", min_chip, minimum=1)
    stride = integer("stride", stride, minimum=1)
    gh, gw = -(-h // stride), -(-w // stride)
    if focus.shape[0] < gh or focus.shape[1] < gw:
        raise ValueError(f"focus must cover the {h}x{w} image at stride {stride}: at least {gh}x{gw} cells, "
                         f"got {list(focus.shape)}")
    if bool(torch.isnan(focus[:gh, :gw]).any()):
        raise ValueError("focus must not hold NaN probabilities")
    mask = (focus[:gh, :gw] >= threshold).to(torch.float32)
    if dilation > 1:
        # reaches dilation // 2 cells up and left, the rest down and right; no farther than the grid matters
        before, after = min(dilation // 2, gh + gw), min(dilation - 1 - dilation // 2, gh + gw)
        mask = F.pad(mask[None, None], (before, after, before, after))
        mask = F.max_pool2d(mask, before + after + 1, stride=1)[0, 0]
    boxes = _boxes_of(label_components(mask > 0))
    if boxes.shape[0]:
        boxes = _merge(boxes, min(min_chip, max(gh, gw)), gw, gh)  # a chip never outgrows the grid
    pixels = (boxes * stride).to(torch.float32)
    limit = torch.tensor([w, h, w, h], dtype=torch.float32, device=focus.device)
    return torch.minimum(pixels, limit)
