"""SNIPER's chips (thesis §3.3): positive chips that cover every valid ground
truth of each level, negative chips where proposals fire away from them.

Chip planning runs on numpy arrays end to end (boxes are converted once, at
the entry of each public method; :class:`Chip` fields are tensors): the greedy
cover is a loop of small matrix products, where numpy's per-call cost is lower
than torch's (one greedy step on 20 boxes x 40 x 30 windows, one thread:
about 25 us in numpy, 55 us in torch, measured for issue 20). The rules they
share with torch code (:func:`~scalekit.boxes.size_in_range`,
:func:`~scalekit.boxes.inside_window`) take either kind of array."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from scalekit.boxes import inside_window, size_in_range
from scalekit.scale.levels import SNIPER_LEVELS, AreaRange, ScaleSpec

__all__ = ["Chip", "ChipGenerator", "sample_negatives"]


@dataclass
class Chip:
    """A chip: a window of one pyramid level — a SNIPER chip or a SNIP sub-image
    window (:func:`~scalekit.chips.snip_chips`), or a whole resized image.

    Attributes:
        level: index of the level in the generator's ``levels``.
        scale: the level's resize factor for this image.
        box: ``[4]`` the window ``(x1, y1, x2, y2)`` in original-image pixels
            (``chip_size / scale`` wide; it may reach past the image, which is
            then zero-padded).
        gt_index: ``[K]`` int64, the valid ground truth fully inside the window.
        kind: ``"pos"`` or ``"neg"``.

    Example:
        >>> import torch
        >>> Chip(level=0, scale=2.0, box=torch.tensor([10.0, 0, 266, 256])).window
        tensor([ 20.,   0., 532., 512.])
    """

    level: int
    scale: float
    box: Tensor
    gt_index: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.int64))
    kind: str = "pos"

    @property
    def window(self) -> Tensor:
        """``[4]`` the window in the pixels of the level's resized image (``box * scale``)."""
        return self.box * self.scale


def sample_negatives(pool_sizes, k: int, rng: np.random.Generator) -> list[np.ndarray]:
    """The one negative-chip sampler: per image, ``min(k, n)`` of its ``n`` pooled
    negative chips, without replacement, in pool order (SNIPER samples a fixed
    number of negative chips per image each epoch, thesis §3.3.3).

    Args:
        pool_sizes: per image, the size of its negative-chip pool.
        k: chips per image.
        rng: a numpy Generator (draws nothing for an empty pool).

    Returns:
        per image, the sorted indices into its pool.

    Example:
        >>> import numpy as np
        >>> from scalekit.chips import sample_negatives
        >>> [len(i) for i in sample_negatives([5, 0, 1], 2, np.random.default_rng(0))]
        [2, 0, 1]
    """
    k = _whole(k, "k", minimum=0)
    out = []
    for i, n in enumerate(pool_sizes):
        n = _whole(n, f"pool_sizes[{i}]", minimum=0)
        if n == 0 or k == 0:
            out.append(np.zeros(0, dtype=np.int64))
        else:
            out.append(np.sort(rng.choice(n, size=min(k, n), replace=False)))
    return out


def _positions(extent: float, chip: int, stride: int) -> np.ndarray:
    """Window starts along one axis of the scaled canvas: every ``stride`` pixels,
    plus one snapped to the far edge; a single 0 when the canvas fits one chip."""
    if extent <= chip:
        return np.zeros(1)
    last = extent - chip
    return np.append(np.arange(0, last, stride, dtype=np.float64), last)


def _image_size(image_size) -> tuple[float, float]:
    """``(height, width)``, both finite and > 0, or a ValueError that says what was given."""
    try:
        h, w = (float(v) for v in image_size)
    except (TypeError, ValueError):
        raise ValueError(f"image_size must be (height, width), got {image_size!r}") from None
    if not (np.isfinite(h) and np.isfinite(w) and h > 0 and w > 0):
        raise ValueError(f"image_size must be (height, width) > 0, got {image_size}")
    return h, w


def as_numpy_rng(generator) -> np.random.Generator | None:
    """A numpy Generator from ``None``, an int seed, a ``torch.Generator`` or a numpy Generator."""
    if generator is None or isinstance(generator, np.random.Generator):
        return generator
    if isinstance(generator, torch.Generator):
        return np.random.default_rng(int(torch.randint(2**62, (1,), generator=generator)))
    if isinstance(generator, (int, np.integer)) and not isinstance(generator, bool):
        return np.random.default_rng(int(generator))
    raise TypeError(f"generator must be None, an int seed, a torch.Generator or a numpy Generator, got {type(generator).__name__}")


def _whole(value, name: str, minimum: int = 1) -> int:
    """``value`` as an int (Python or numpy integer, or an integral float) at least ``minimum``, or a clear error."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if not (np.isfinite(value) and float(value).is_integer() and value >= minimum):
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {value}")
    return int(value)


def check_boxes(boxes, image_size, name: str = "boxes", must_overlap: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(boxes as given, boxes clipped to the image), float64 numpy, after
    checking the layout: ``[N, 4]`` finite ``(x1, y1, x2, y2)`` with
    ``x2 >= x1`` and ``y2 >= y1``; with ``must_overlap`` (ground truth) every
    box must also overlap the image (a box wholly outside it cannot be learned
    in any chip). The one box check of chip planning (SNIPER and SNIP)."""
    h, w = _image_size(image_size)
    if isinstance(boxes, Tensor):
        boxes = boxes.detach().cpu().numpy()
    b = np.asarray(boxes, dtype=np.float64)
    if b.size == 0:
        b = b.reshape(0, 4)
    if b.ndim != 2 or b.shape[1] != 4:
        hint = (" (a score or batch-index column? pass only the four coordinates, e.g. proposals[:, :4])"
                if b.ndim == 2 and b.shape[1] == 5 else "")
        raise ValueError(f"{name} must have shape [N, 4] (x1, y1, x2, y2), got {list(b.shape)}{hint}")
    if not np.isfinite(b).all():
        i = int(np.flatnonzero(~np.isfinite(b).all(1))[0])
        raise ValueError(f"{name} must be finite, got {name}[{i}] = {tuple(b[i].tolist())}")
    reversed_ = (b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1])
    if reversed_.any():
        bad = np.flatnonzero(reversed_)
        raise ValueError(
            f"{name} must be (x1, y1, x2, y2) with x2 >= x1 and y2 >= y1; {name}[{int(bad[0])}] = "
            f"{tuple(b[bad[0]].tolist())} is not ({bad.size} such). (x, y, width, height) boxes, as COCO's "
            "JSON stores them? Convert them with torchvision.ops.box_convert(boxes, 'xywh', 'xyxy')")
    if must_overlap:
        outside = (b[:, 0] >= w) | (b[:, 2] <= 0) | (b[:, 1] >= h) | (b[:, 3] <= 0)
        if outside.any():
            bad = np.flatnonzero(outside)
            raise ValueError(
                f"{name}[{int(bad[0])}] = {tuple(b[bad[0]].tolist())} lies wholly outside the image of "
                f"(height, width) = ({h:g}, {w:g}) ({bad.size} such): no chip can train on it. Check that image_size "
                "is (height, width) and the boxes are in this image's pixels (x1, y1, x2, y2); remove "
                f"boxes that are not, e.g. boxes[(boxes[:, 2] > 0) & (boxes[:, 0] < {w}) & "
                f"(boxes[:, 3] > 0) & (boxes[:, 1] < {h})]")
    clipped = np.empty_like(b)
    clipped[:, 0::2] = b[:, 0::2].clip(0, w)
    clipped[:, 1::2] = b[:, 1::2].clip(0, h)
    return b, clipped


def _containment(x1, y1, x2, y2, xs, ys, chip):
    """[B, Nx] and [B, Ny]: box b fits window column i / row j."""
    in_x = (xs[None, :] <= x1[:, None]) & (x2[:, None] <= xs[None, :] + chip)
    in_y = (ys[None, :] <= y1[:, None]) & (y2[:, None] <= ys[None, :] + chip)
    return in_x, in_y


def _greedy_cover(x1, y1, x2, y2, xs, ys, chip, need, generator, min_count=1):
    """Greedy set cover of boxes (scaled canvas) by windows at (xs[i], ys[j]).

    Containment is separable: box b is in window (i, j) iff it fits along x in
    column i and along y in row j, so the count of uncovered boxes for every
    window is one small matrix product per pick. Returns [(i, j, members)] and
    the boxes no window contains."""
    in_x, in_y = _containment(x1, y1, x2, y2, xs, ys, chip)
    coverable = in_x.any(1) & in_y.any(1)
    left = need & coverable
    order_x = np.arange(xs.size)
    order_y = np.arange(ys.size)
    if generator is not None:  # ties between windows broken at random, seeded
        order_x = generator.permutation(xs.size)
        order_y = generator.permutation(ys.size)
        in_x, in_y = in_x[:, order_x], in_y[:, order_y]
    fx, fy = in_x.astype(np.float32), in_y.astype(np.float32)
    picks = []
    while left.any():
        counts = fx[left].T @ fy[left]  # [Nx, Ny]
        flat = int(np.argmax(counts))
        i, j = divmod(flat, ys.size)
        if counts[i, j] < min_count:
            break
        members = in_x[:, i] & in_y[:, j]
        picks.append((order_x[i], order_y[j], members))
        left &= ~members
    return picks, need & ~coverable


class ChipGenerator:
    """Positive and negative chips per image, per pyramid level (SNIPER).

    For each level the image is resized by the level's factor; on that canvas
    ``chip_size`` windows sit every ``stride`` pixels, plus windows snapped to
    the right and bottom edges, all inside the canvas (a canvas smaller than a
    chip gives one window at the origin, zero-padded).

    * Positive chips: greedily the window that fully contains the most
      not-yet-covered *valid* ground truth, until every valid box that fits a
      chip is covered. A valid box too large for a chip at its level (only at
      extreme aspect ratios: ranges keep boxes small where images are
      enlarged) is reported with a warning and by :meth:`uncoverable`.
    * Negative chips: from the proposals in the level's range that no positive
      chip of the level contains, greedily the windows containing at least
      ``neg_min_proposals[level]`` of them; :meth:`generate` samples
      ``neg_chips_per_image`` chips from the pool of all levels.

    Boxes are ``(x1, y1, x2, y2)`` in original-image pixels and are clipped to
    the image first. A reversed box (``x2 < x1`` or ``y2 < y1``, e.g. COCO's
    ``(x, y, w, h)`` passed as is) or a ground-truth box wholly outside the
    image raises a :class:`ValueError` naming it, instead of getting a
    positive chip that trains on nothing. Defaults: chip 512, stride 32
    (thesis §3.3.1; the released code draws a stride in 56-59 each epoch),
    SNIPER's levels, 2 negative chips per image, and a negative chip needs
    more than 25 proposals at the finest level and more than 10 elsewhere (the
    released code): ``neg_min_proposals=None`` gives ``(26, 11, ..., 11)``.

    Example:
        >>> import torch
        >>> from scalekit.chips import ChipGenerator
        >>> gen = ChipGenerator()
        >>> boxes = torch.tensor([[10.0, 10, 40, 40], [300, 200, 330, 230], [100, 50, 400, 400]])
        >>> chips = gen.positive_chips(boxes, image_size=(480, 640))
        >>> [(c.level, c.gt_index.tolist()) for c in chips]
        [(0, [0]), (0, [1]), (2, [2])]
        >>> chips[0].box  # a 512 px chip at 3x is 170.7 px of the original image
        tensor([  0.0000,   0.0000, 170.6667, 170.6667])
    """

    def __init__(self, chip_size: int = 512, stride: int = 32,
                 levels: Sequence[tuple[ScaleSpec, AreaRange]] = SNIPER_LEVELS, neg_chips_per_image: int = 2,
                 neg_min_proposals: int | Sequence[int] | None = None) -> None:
        chip_size, stride = _whole(chip_size, "chip_size"), _whole(stride, "stride")
        neg_chips_per_image = _whole(neg_chips_per_image, "neg_chips_per_image", minimum=0)
        levels = tuple(levels)
        if len(levels) == 0:
            raise ValueError("levels must not be empty")
        for k, level in enumerate(levels):
            if not (isinstance(level, (tuple, list)) and len(level) == 2 and isinstance(level[0], ScaleSpec)
                    and isinstance(level[1], AreaRange)):
                raise TypeError(f"levels[{k}] must be a (ScaleSpec, AreaRange) pair, got {level!r}")
        self.chip_size, self.stride, self.levels = chip_size, stride, levels
        self.neg_chips_per_image = neg_chips_per_image
        if neg_min_proposals is None:  # more than 25 at the finest level, more than 10 elsewhere
            neg_min_proposals = (26,) + (11,) * (len(self.levels) - 1)
        if isinstance(neg_min_proposals, (int, np.integer)):
            neg_min_proposals = (neg_min_proposals,) * len(self.levels)
        if len(neg_min_proposals) != len(self.levels):
            raise ValueError(f"neg_min_proposals needs one value per level ({len(self.levels)}), got {neg_min_proposals}")
        self.neg_min_proposals = tuple(_whole(v, "neg_min_proposals", minimum=0) for v in neg_min_proposals)

    def __repr__(self) -> str:
        return (f"ChipGenerator(chip_size={self.chip_size}, stride={self.stride}, levels={len(self.levels)}, "
                f"neg_chips_per_image={self.neg_chips_per_image}, neg_min_proposals={self.neg_min_proposals})")

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _boxes(boxes, image_size, name: str = "boxes") -> tuple[np.ndarray, np.ndarray]:
        return check_boxes(boxes, image_size, name, must_overlap=name == "boxes")

    def _canvas(self, level: int, image_size):
        h, w = image_size
        if h <= 0 or w <= 0:
            raise ValueError(f"image_size must be (height, width) > 0, got {image_size}")
        spec, area = self.levels[level]
        f = spec.factor(h, w)
        xs = _positions(w * f, self.chip_size, self.stride)
        ys = _positions(h * f, self.chip_size, self.stride)
        return f, area, xs, ys

    def _chip(self, level, f, x, y, kind, inside) -> Chip:
        box = torch.from_numpy(np.array([x, y, x + self.chip_size, y + self.chip_size], dtype=np.float32) / np.float32(f))
        return Chip(level, f, box, torch.from_numpy(np.flatnonzero(inside)), kind)

    @staticmethod
    def _valid(b: np.ndarray, area: AreaRange) -> np.ndarray:
        """Valid at the level, judged on the box as given (not clipped): :func:`scalekit.boxes.size_in_range`."""
        return size_in_range(b, area.lo, area.hi)

    def _inside(self, s: np.ndarray, x: float, y: float) -> np.ndarray:
        """Boxes (canvas pixels) wholly inside the window at ``(x, y)``."""
        return inside_window(s, np.array([x, y, x + self.chip_size, y + self.chip_size]))

    # ------------------------------------------------------------------ API
    def uncoverable(self, boxes, image_size) -> dict[int, list[int]]:
        """Valid boxes that no window of their level contains (too large for a chip there), per level."""
        b, clipped = self._boxes(boxes, image_size)
        out = {}
        for level in range(len(self.levels)):
            f, area, xs, ys = self._canvas(level, image_size)
            s = clipped * f
            in_x, in_y = _containment(s[:, 0], s[:, 1], s[:, 2], s[:, 3], xs, ys, self.chip_size)
            bad = np.flatnonzero(self._valid(b, area) & ~(in_x.any(1) & in_y.any(1)))
            if bad.size:
                out[level] = bad.tolist()
        return out

    def positive_chips(self, boxes, image_size, generator=None) -> list[Chip]:
        """Chips covering every valid ground-truth box of each level.

        Args:
            boxes: ``[N, 4]`` ground truth in original-image pixels.
            image_size: ``(height, width)``.
            generator: seed, ``torch.Generator`` or numpy Generator that breaks
                ties between equally good windows at random; ``None``: the first
                window in raster order.
        """
        generator = as_numpy_rng(generator)
        b, clipped = self._boxes(boxes, image_size)
        chips = []
        for level in range(len(self.levels)):
            valid = self._valid(b, self.levels[level][1])
            if not valid.any():
                continue
            f, area, xs, ys = self._canvas(level, image_size)
            s = clipped * f
            picks, missed = _greedy_cover(s[:, 0], s[:, 1], s[:, 2], s[:, 3], xs, ys, self.chip_size, valid, generator)
            if missed.any():
                warnings.warn(f"level {level}: valid boxes {np.flatnonzero(missed).tolist()} do not fit a "
                              f"{self.chip_size} px chip at scale {f:.3f} and are left uncovered", stacklevel=2)
            for i, j, members in picks:  # members: the boxes inside window (i, j), from the cover itself
                chips.append(self._chip(level, f, xs[i], ys[j], "pos", valid & members))
        return chips

    def negative_chips(self, boxes, image_size, proposals, positives: list[Chip] | None = None) -> list[Chip]:
        """The pool of negative chips: windows holding enough proposals that no positive chip contains.

        Args:
            boxes: ``[N, 4]`` ground truth (for the positive chips, if not given).
            image_size: ``(height, width)``.
            proposals: ``[P, 4]`` proposals in original-image pixels (an RPN run
                or any boxes), only those in a level's range count at that level.
            positives: the image's positive chips (computed if ``None``).
        """
        if positives is None:
            positives = self.positive_chips(boxes, image_size)
        p, p_clipped = self._boxes(proposals, image_size, "proposals")
        b, b_clipped = self._boxes(boxes, image_size)
        chips = []
        for level in range(len(self.levels)):
            f, area, xs, ys = self._canvas(level, image_size)
            s = p_clipped * f
            covered = np.zeros(len(p), dtype=bool)
            for c in positives:
                if c.level == level:
                    covered |= inside_window(s, (c.box.double() * f).numpy(), tol=1e-6)
            need = self._valid(p, area) & ~covered
            picks, _ = _greedy_cover(s[:, 0], s[:, 1], s[:, 2], s[:, 3], xs, ys, self.chip_size, need, None,
                                     min_count=self.neg_min_proposals[level])
            gt = b_clipped * f
            valid_gt = self._valid(b, area)
            for i, j, _ in picks:
                inside = valid_gt & self._inside(gt, xs[i], ys[j])
                chips.append(self._chip(level, f, xs[i], ys[j], "neg", inside))
        return chips

    def generate(self, boxes, image_size, proposals=None, generator=None) -> list[Chip]:
        """This epoch's chips: all positive chips plus ``neg_chips_per_image``
        negatives sampled (without replacement) from the pool of all levels;
        no negatives without ``proposals``. ``generator``: seed,
        ``torch.Generator`` or numpy Generator (``None``: seed 0)."""
        positives = self.positive_chips(boxes, image_size)
        if proposals is None or self.neg_chips_per_image <= 0:
            return positives
        pool = self.negative_chips(boxes, image_size, proposals, positives)
        if not pool:
            return positives
        rng = as_numpy_rng(generator) if generator is not None else np.random.default_rng(0)
        (pick,) = sample_negatives([len(pool)], self.neg_chips_per_image, rng)
        return positives + [pool[i] for i in pick.tolist()]
