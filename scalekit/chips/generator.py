"""SNIPER's chips (thesis §3.3): positive chips that cover every valid ground
truth of each level, negative chips where proposals fire away from them.

Chip planning runs on numpy arrays (boxes are converted once, at the entry of
each public method; :class:`Chip` fields are tensors) around one compiled call
per image, ``scalekit::chip_cover`` (``csrc/chips/cpu/chip_cover.cpp``): the
greedy cover of every level, with window counts updated incrementally as boxes
get covered. Window positions are cached per image size. On COCO-like images
this is about 2x a plain vectorised numpy greedy and 2.5-5x SNIPER's own C++
generator (``python -m benchmarks chips --sniper-repo DIR``). The rules chip
planning shares with torch code (:func:`~scalekit.boxes.size_in_range`,
:func:`~scalekit.boxes.inside_window`) take either kind of array."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from scalekit import _ext
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
    if not (0 < h < math.inf and 0 < w < math.inf):  # NaN fails too
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
    if (b[:, 2:] < b[:, :2]).any():
        bad = np.flatnonzero((b[:, 2:] < b[:, :2]).any(1))
        raise ValueError(
            f"{name} must be (x1, y1, x2, y2) with x2 >= x1 and y2 >= y1; {name}[{int(bad[0])}] = "
            f"{tuple(b[bad[0]].tolist())} is not ({bad.size} such). (x, y, width, height) boxes, as COCO's "
            "JSON stores them? Convert them with torchvision.ops.box_convert(boxes, 'xywh', 'xyxy')")
    if must_overlap and ((b[:, :2] >= (w, h)) | (b[:, 2:] <= 0)).any():
        bad = np.flatnonzero(((b[:, :2] >= (w, h)) | (b[:, 2:] <= 0)).any(1))
        raise ValueError(
            f"{name}[{int(bad[0])}] = {tuple(b[bad[0]].tolist())} lies wholly outside the image of "
            f"(height, width) = ({h:g}, {w:g}) ({bad.size} such): no chip can train on it. Check that image_size "
            "is (height, width) and the boxes are in this image's pixels (x1, y1, x2, y2); remove "
            f"boxes that are not, e.g. boxes[(boxes[:, 2] > 0) & (boxes[:, 0] < {w}) & "
            f"(boxes[:, 3] > 0) & (boxes[:, 1] < {h})]")
    clipped = np.minimum(np.maximum(b, 0.0), (w, h, w, h))
    return b, clipped


def _cover(boxes: np.ndarray, need: np.ndarray, plan: "_Plan", chip: int, min_count, generator=None):
    """Greedy set cover of boxes by windows, every level of one image in one call
    of the compiled ``scalekit::chip_cover`` (see ``csrc/chips/cpu/chip_cover.cpp``).

    At level ``l`` the boxes are scaled by the level's factor; a pick is the window
    that holds the most still-uncovered boxes of ``need[l]`` (the first in raster
    order, or in an order shuffled by ``generator`` for each level that needs a
    chip), until every needed box that fits a window is covered or the best
    window holds fewer than ``min_count[l]``.

    Returns ``(picks, members, coverable)``: ``(level, x, y)``, three ``[P]``
    arrays, the picked windows' levels and corners in canvas pixels, in pick
    order per level; ``[P, N]`` bool, the boxes
    inside each; ``[L, N]`` bool, the boxes some window of the level holds."""
    _ext.assert_has_ops()
    xs, ys = plan.xs, plan.ys
    if generator is not None:  # ties between windows broken at random, seeded
        xs, ys = xs.copy(), ys.copy()
        for level in np.flatnonzero(need.any(1)):
            a, b = plan.x_offsets[level], plan.x_offsets[level + 1]
            xs[a:b] = xs[a:b][generator.permutation(b - a)]
            a, b = plan.y_offsets[level], plan.y_offsets[level + 1]
            ys[a:b] = ys[a:b][generator.permutation(b - a)]
    picks, members, coverable = torch.ops.scalekit.chip_cover(
        torch.from_numpy(boxes), torch.from_numpy(need), plan.factors_t, torch.from_numpy(xs), torch.from_numpy(ys),
        plan.x_offsets_t, plan.y_offsets_t, float(chip), list(min_count))
    picks = picks.numpy()
    return (picks[:, 0], xs[picks[:, 1]], ys[picks[:, 2]]), members.numpy(), coverable.numpy()


@dataclass
class _Plan:
    """The window starts of every level for one image size (cached per generator)."""

    factors: np.ndarray
    xs: np.ndarray
    ys: np.ndarray
    x_offsets: np.ndarray
    y_offsets: np.ndarray

    def __post_init__(self):
        self.factors_t, self.x_offsets_t, self.y_offsets_t = (
            torch.from_numpy(a) for a in (self.factors, self.x_offsets, self.y_offsets))


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
        self._chip_size, self._stride, self._levels = chip_size, stride, levels
        self.neg_chips_per_image = neg_chips_per_image
        if neg_min_proposals is None:  # more than 25 at the finest level, more than 10 elsewhere
            neg_min_proposals = (26,) + (11,) * (len(self.levels) - 1)
        if isinstance(neg_min_proposals, (int, np.integer)):
            neg_min_proposals = (neg_min_proposals,) * len(self.levels)
        if len(neg_min_proposals) != len(self.levels):
            raise ValueError(f"neg_min_proposals needs one value per level ({len(self.levels)}), got {neg_min_proposals}")
        self.neg_min_proposals = tuple(_whole(v, "neg_min_proposals", minimum=0) for v in neg_min_proposals)
        self._lo = np.array([area.lo for _, area in self.levels], dtype=np.float64)
        self._hi = np.array([area.hi for _, area in self.levels], dtype=np.float64)
        self._plans: dict = {}

    # Read-only: window positions are cached per image size.
    @property
    def chip_size(self) -> int:
        """Side of a chip in the pixels of its level."""
        return self._chip_size

    @property
    def stride(self) -> int:
        """Distance between neighbouring window positions, in the pixels of a level."""
        return self._stride

    @property
    def levels(self) -> tuple[tuple[ScaleSpec, AreaRange], ...]:
        """The ``(ScaleSpec, AreaRange)`` of each pyramid level."""
        return self._levels

    def __repr__(self) -> str:
        return (f"ChipGenerator(chip_size={self.chip_size}, stride={self.stride}, levels={len(self.levels)}, "
                f"neg_chips_per_image={self.neg_chips_per_image}, neg_min_proposals={self.neg_min_proposals})")

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _boxes(boxes, image_size, name: str = "boxes") -> tuple[np.ndarray, np.ndarray]:
        return check_boxes(boxes, image_size, name, must_overlap=name == "boxes")

    def _plan(self, image_size) -> _Plan:
        """Every level's factor and window starts for this image size, cached
        (a dataset repeats a few image sizes; planning them again costs more than
        the greedy cover of a typical image)."""
        h, w = image_size
        key = (h, w)
        plan = self._plans.get(key)
        if plan is None:
            factors = np.array([spec.factor(h, w) for spec, _ in self.levels], dtype=np.float64)
            xs = [_positions(w * f, self.chip_size, self.stride) for f in factors]
            ys = [_positions(h * f, self.chip_size, self.stride) for f in factors]
            offsets = [np.cumsum([0] + [len(a) for a in axis]).astype(np.int64) for axis in (xs, ys)]
            plan = _Plan(factors, np.concatenate(xs), np.concatenate(ys), *offsets)
            if len(self._plans) >= 256:
                self._plans.clear()
            self._plans[key] = plan
        return plan

    def _valid(self, b: np.ndarray) -> np.ndarray:
        """``[L, N]``: valid at each level, judged on the box as given (not clipped):
        :func:`scalekit.boxes.size_in_range` with every level's range at once."""
        return size_in_range(b, self._lo, self._hi)

    def _chips(self, plan: _Plan, picks, inside: np.ndarray, kind: str) -> list[Chip]:
        """Chips at the canvas windows ``picks`` (``(level, x, y)``, ``[P]`` each) holding the boxes ``inside`` ``[P, N]``."""
        level, x, y = picks
        if len(level) == 0:
            return []
        f = plan.factors[level]
        corners = np.empty((len(level), 4))
        corners[:, 0], corners[:, 1], corners[:, 2], corners[:, 3] = x, y, x + self.chip_size, y + self.chip_size
        boxes = torch.from_numpy(corners.astype(np.float32) / f.astype(np.float32)[:, None]).unbind(0)
        gt_index = torch.from_numpy(inside).nonzero()[:, 1].split(inside.sum(1).tolist())
        return [Chip(*c, kind) for c in zip(level.tolist(), f.tolist(), boxes, gt_index)]

    # ------------------------------------------------------------------ API
    def uncoverable(self, boxes, image_size) -> dict[int, list[int]]:
        """Valid boxes that no window of their level contains (too large for a chip there), per level."""
        b, clipped = self._boxes(boxes, image_size)
        valid = self._valid(b)
        # nothing is needed, so nothing is picked: only the cover's ``coverable`` is read
        _, _, coverable = _cover(clipped, np.zeros_like(valid), self._plan(_image_size(image_size)), self.chip_size,
                                 (1,) * len(self.levels))
        return {level: bad.tolist() for level in range(len(self.levels))
                if (bad := np.flatnonzero(valid[level] & ~coverable[level])).size}

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
        valid = self._valid(b)
        plan = self._plan(_image_size(image_size))
        picks, members, coverable = _cover(clipped, valid, plan, self.chip_size, (1,) * len(self.levels), generator)
        missed = valid & ~coverable
        for level in np.flatnonzero(missed.any(1)):
            warnings.warn(f"level {level}: valid boxes {np.flatnonzero(missed[level]).tolist()} do not fit a "
                          f"{self.chip_size} px chip at scale {plan.factors[level]:.3f} and are left uncovered",
                          stacklevel=2)
        # members: the boxes inside each window, from the cover itself
        return self._chips(plan, picks, valid[picks[0]] & members, "pos")

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
        plan = self._plan(_image_size(image_size))
        need = self._valid(p)
        for c in positives:  # proposals a positive chip of their level holds need no negative chip
            f = plan.factors[c.level]
            need[c.level] &= ~inside_window(p_clipped * f, (c.box.double() * f).numpy(), tol=1e-6)
        picks, _, _ = _cover(p_clipped, need, plan, self.chip_size, self.neg_min_proposals)
        valid_gt = self._valid(b)
        inside = np.zeros((len(picks[0]), len(b)), dtype=bool)
        for k, (level, x, y) in enumerate(zip(*picks)):
            window = np.array([x, y, x + self.chip_size, y + self.chip_size])
            inside[k] = valid_gt[level] & inside_window(b_clipped * plan.factors[level], window)
        return self._chips(plan, picks, inside, "neg")

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
