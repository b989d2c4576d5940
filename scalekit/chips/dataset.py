"""Training sets over any detection dataset: SNIPER's chips (thesis §3.3) and
SNIP's levels (whole images or sub-image windows per pyramid level, §2.6)."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch.utils.data import Dataset
from torch.utils.data._utils.collate import default_collate_fn_map

from scalekit.chips.crops import chip_targets, crop_chip
from scalekit.chips.generator import Chip, ChipGenerator, sample_negatives
from scalekit.chips.snip import snip_chips
from scalekit.scale.levels import AreaRange, ScaleSpec
from scalekit.scale.pyramid import resize_image

__all__ = ["ChipDataset", "LevelDataset", "DetectionItem", "collate_chips"]


class DetectionItem(tuple):
    """``(image [C, H, W], target dict)``: an item of :class:`ChipDataset` and
    :class:`LevelDataset`. A plain tuple, except that torch's default collate
    refuses it with an error naming the collate to use (targets hold different
    numbers of boxes and cannot be stacked).

    Example:
        >>> import torch
        >>> from torch.utils.data import default_collate
        >>> from scalekit.chips import DetectionItem
        >>> item = DetectionItem((torch.zeros(3, 4, 4), {"boxes": torch.zeros(0, 4)}))
        >>> image, target = item
        >>> default_collate([item, item])
        Traceback (most recent call last):
        ...
        TypeError: a batch of detection items (image, target) cannot be stacked by the default collate: ...
    """

    __slots__ = ()


def _refuse_default_collate(batch, *, collate_fn_map=None):
    raise TypeError("a batch of detection items (image, target) cannot be stacked by the default collate: "
                    "pass collate_fn=ChipDataset.collate_fn (scalekit.chips.collate_chips) to the DataLoader, "
                    "which gives (images, targets) lists as torchvision detectors take them")


# torch's documented extension point of default_collate: our item type gets a clear error.
default_collate_fn_map[DetectionItem] = _refuse_default_collate


def collate_chips(batch):
    """``DataLoader`` collate for detection items: ``(images, targets)`` as two lists.

    torchvision's detection models take a list of images and a list of target
    dicts; the default collate cannot stack targets with different numbers of
    boxes (nor the :class:`~scalekit.chips.Chip` each target carries).

    Example:
        >>> import torch
        >>> from scalekit.chips import collate_chips
        >>> batch = [(torch.zeros(3, 4, 4), {"boxes": torch.zeros(2, 4)}), (torch.ones(3, 4, 4), {"boxes": torch.zeros(0, 4)})]
        >>> images, targets = collate_chips(batch)
        >>> len(images), [len(t["boxes"]) for t in targets]
        (2, [2, 0])
    """
    images, targets = zip(*batch) if batch else ((), ())  # noqa: B905
    return list(images), list(targets)


class ChipDataset(Dataset):
    """Chips of every image of a detection dataset, resampled each epoch.

    ``dataset[i]`` must give ``(image [C, H, W], {"boxes": [N, 4], "labels": [N]})``;
    if it has ``annotations(i) -> (boxes, labels, (height, width))`` (as
    :class:`~scalekit.datasets.CocoDetection`), chips are planned without
    loading images. Item ``k`` is ``(chip_image [C, S, S], target)`` (a
    :class:`DetectionItem`) with the target of :func:`chip_targets` at the
    chip's level (``"boxes"``, ``"labels"`` of the valid boxes,
    ``"ignore_boxes"`` for the invalid ones and the image's crowd regions,
    ``"valid_range"``) plus ``"image_index"`` and ``"chip"``.

    Positive chips are fixed; ``set_epoch(e)`` resamples the negative chips
    (seeded by ``seed`` and ``e``), so every process of a
    ``DistributedSampler`` sees the same chip list.

    Load with ``DataLoader(chips, batch_size=..., collate_fn=ChipDataset.collate_fn)``
    (:func:`collate_chips`): batches are ``(images, targets)`` lists, as a
    torchvision detector takes them. Train the detector on chips at their own
    size (:func:`scalekit.detection.keep_input_size`) and with the ignore boxes
    honoured (:func:`scalekit.detection.honour_ignore_boxes`).

    Args:
        dataset: the detection dataset.
        generator: the :class:`ChipGenerator`.
        proposals: per image ``[P, 4]`` proposals for negative chips, or ``None``.
        seed: seeds the negative-chip sampling.
        min_size: drop cropped boxes smaller than this in chip pixels.
    """

    collate_fn = staticmethod(collate_chips)

    def __init__(self, dataset, generator: ChipGenerator, proposals=None, seed: int = 0, min_size: float = 0.0):
        self.dataset, self.generator, self.proposals = dataset, generator, proposals
        self.seed, self.min_size = seed, min_size
        if proposals is not None and len(proposals) != len(dataset):
            raise ValueError(f"proposals must have one entry per image ({len(dataset)}), got {len(proposals)}")
        self._annotations = [self._annotation(i) for i in range(len(dataset))]
        self._positives, self._negatives = [], []
        for i, (b, _, size) in enumerate(self._annotations):
            try:
                self._positives.append(generator.positive_chips(b, size))
                self._negatives.append(generator.negative_chips(b, size, proposals[i], self._positives[i])
                                       if proposals is not None else [])
            except ValueError as exc:
                raise ValueError(f"dataset image {i}: {exc}") from exc
        self._warned = False
        self._sample(0)

    def _annotation(self, i):
        if hasattr(self.dataset, "annotations"):
            boxes, labels, size = self.dataset.annotations(i)
        else:
            image, target = self.dataset[i]
            boxes, labels, size = target["boxes"], target["labels"], tuple(image.shape[-2:])
        boxes = torch.as_tensor(boxes, dtype=torch.float32)
        if boxes.numel() == 0:
            boxes = boxes.reshape(0, 4)  # empty boxes of any shape; others keep theirs, for the generator's check
        return boxes, torch.as_tensor(labels), size

    def set_epoch(self, epoch: int) -> None:
        """Resample this epoch's negative chips (:func:`~scalekit.chips.sample_negatives`).

        Warns once when there is nothing to resample (no ``proposals``, or no
        image has a negative chip): the chip list is then the same every epoch.
        """
        self._sample(epoch)
        if not any(self._negatives) and not self._warned:
            self._warned = True
            why = "no proposals were given" if self.proposals is None else "no image has a negative chip"
            warnings.warn(f"ChipDataset.set_epoch({epoch}): there are no negative chips to resample ({why}); "
                          "every epoch trains on the same positive chips. Pass proposals=... (e.g. from "
                          "scalekit.detection.mine_proposals) for SNIPER's negative chips", stacklevel=2)

    def _sample(self, epoch: int) -> None:
        picks = sample_negatives([len(n) for n in self._negatives], self.generator.neg_chips_per_image,
                                 np.random.default_rng((self.seed, epoch)))
        self.items = []
        for i, (pos, neg, pick) in enumerate(zip(self._positives, self._negatives, picks)):
            self.items += [(i, c) for c in pos] + [(i, neg[j]) for j in pick.tolist()]

    @property
    def pixels(self) -> float:
        """Pixels of one epoch's chips."""
        return float(len(self.items)) * self.generator.chip_size ** 2

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int):
        i, chip = self.items[k]
        image, target = self.dataset[i]
        boxes, labels, _ = self._annotations[i]
        target = {"boxes": boxes, "labels": labels, "ignore_boxes": target.get("ignore_boxes", torch.zeros(0, 4))}
        pixels, t = crop_chip(image, target, chip, self.generator.chip_size, self.generator.levels,
                              min_size=self.min_size)
        return DetectionItem((pixels, {**t, "image_index": i, "chip": chip}))


class LevelDataset(Dataset):
    """SNIP's training set: every image at every pyramid level, whole or in sub-image windows.

    Item ``k`` is one (image, level, window): the image resized by the
    level's factor (:func:`~scalekit.scale.resize_image`), cropped to the
    window, with the target of :func:`chip_targets` for that window. Where
    ``chip_sizes[level]`` is set and the resized image is larger than it,
    the windows are SNIP's sub-image chips (:func:`snip_chips`, thesis §2.6.2:
    1000x1000 at the finest level, covering its valid ground truth); elsewhere
    the window is the whole resized image. Windows are drawn once, seeded.

    * SNIP: ``ranges=True``: at each level, objects outside its range are
      ignore boxes and proposals outside it are ignored (``"valid_range"``).
    * Multi-scale training (MST, thesis Fig. 2.5): ``ranges=False``, the same
      dataset with every object an object at every level.
    * Single-scale training: one level with ``ranges=False``.
    * SNIP warm-started as MST (thesis §2.7.1): ``ranges=True,
      ranges_from_epoch=E``: epochs before ``E`` train as MST (every object an
      object, no ``"valid_range"``), then the ranges apply. The thesis switches
      the RPN's ranges on after 1 epoch and the classifier's after 3 of 7; here
      one epoch switches both (``set_epoch``, which a training loop calls
      before each epoch). The sub-image windows are planned once, with the
      ranges, so both phases train on the same windows.

    Load with ``DataLoader(..., collate_fn=LevelDataset.collate_fn)`` and
    train a detector that keeps input sizes (:func:`scalekit.detection.keep_input_size`).

    Args:
        dataset: ``dataset[i] -> (image [C, H, W], {"boxes", "labels"[, "ignore_boxes"]})``;
            with ``annotations(i) -> (boxes, labels, (height, width))`` the windows
            are planned without loading images.
        levels: ``(ScaleSpec, AreaRange)`` pairs (e.g. :data:`~scalekit.scale.SNIP_LEVELS`).
        ranges: whether each level's range applies (SNIP) or not (MST).
        chip_sizes: per level, the sub-image chip side in level pixels, or
            ``None`` (whole images); e.g. ``(1000, None, None)`` for SNIP.
        num_candidates: random windows per pick of :func:`snip_chips` (50).
        seed: seeds the windows.
        min_size: see :func:`chip_targets`.
        ranges_from_epoch: with ``ranges``, the first epoch whose items carry
            the ranges (0: from the start); earlier epochs train as MST.

    Example:
        >>> import torch
        >>> from scalekit.chips import LevelDataset
        >>> from scalekit.scale import SNIP_LEVELS
        >>> images = [(torch.rand(3, 200, 300), {"boxes": torch.tensor([[10.0, 10, 30, 30], [50, 50, 190, 190]]),
        ...                                     "labels": torch.tensor([1, 2])})]
        >>> snip = LevelDataset(images, SNIP_LEVELS)
        >>> [(tuple(im.shape[1:]), len(t["boxes"]), len(t["ignore_boxes"])) for im, t in snip]
        [((1333, 2000), 1, 1), ((800, 1200), 2, 0), ((480, 720), 1, 1)]
        >>> snip[1][1]["valid_range"]  # the RPN range [0, 160] keeps both boxes; the classifier's is [40, 160]
        tensor([160., 640.])
        >>> mst = LevelDataset(images, SNIP_LEVELS, ranges=False)
        >>> [len(t["boxes"]) for _, t in mst]
        [2, 2, 2]
        >>> warm = LevelDataset(images, SNIP_LEVELS, ranges_from_epoch=1)
        >>> [len(t["boxes"]) for _, t in warm], warm.set_epoch(1), [len(t["boxes"]) for _, t in warm]
        ([2, 2, 2], None, [1, 2, 1])
    """

    collate_fn = staticmethod(collate_chips)

    def __init__(self, dataset, levels, *, ranges: bool = True, chip_sizes=None, num_candidates: int = 50,
                 seed: int = 0, min_size: float = 0.0, ranges_from_epoch: int = 0) -> None:
        self.dataset, self.levels, self.ranges, self.min_size = dataset, tuple(levels), bool(ranges), min_size
        if isinstance(ranges_from_epoch, bool) or not isinstance(ranges_from_epoch, (int, np.integer)) \
                or ranges_from_epoch < 0:
            raise ValueError(f"ranges_from_epoch must be an integer >= 0, got {ranges_from_epoch!r}")
        if ranges_from_epoch and not self.ranges:
            raise ValueError("ranges_from_epoch needs ranges=True (it says when the ranges switch on)")
        self.ranges_from_epoch = int(ranges_from_epoch)
        self.epoch = 0
        for k, level in enumerate(self.levels):
            if not (isinstance(level, (tuple, list)) and len(level) == 2 and isinstance(level[0], ScaleSpec)
                    and isinstance(level[1], AreaRange)):
                raise TypeError(f"levels[{k}] must be a (ScaleSpec, AreaRange) pair, got {level!r}")
        chip_sizes = (None,) * len(self.levels) if chip_sizes is None else tuple(chip_sizes)
        if len(chip_sizes) != len(self.levels):
            raise ValueError(f"chip_sizes needs one entry per level ({len(self.levels)}), got {chip_sizes}")
        rng = np.random.default_rng(seed)
        self.items: list[tuple[int, Chip]] = []
        for i in range(len(dataset)):
            boxes, size = self._annotation(i)
            h, w = size
            for k, (spec, area) in enumerate(self.levels):
                f = spec.factor(h, w)
                lh, lw = max(1, round(h * f)), max(1, round(w * f))
                chip = chip_sizes[k]
                if chip is not None and max(lh, lw) > chip:
                    cover = area.valid_mask(boxes) if self.ranges else torch.ones(len(boxes), dtype=torch.bool)
                    try:
                        windows = snip_chips(boxes[cover] * f, (lh, lw), chip, num_candidates, generator=rng,
                                             level=k, scale=f)
                    except ValueError as exc:
                        raise ValueError(f"dataset image {i}: {exc}") from exc
                    index = cover.nonzero().flatten()
                    for c in windows:  # gt_index into the image's boxes, not into the covered ones
                        c.gt_index = index[c.gt_index]
                        self.items.append((i, c))
                else:
                    self.items.append((i, Chip(k, f, torch.tensor([0.0, 0.0, lw / f, lh / f]))))

    def _annotation(self, i):
        if hasattr(self.dataset, "annotations"):
            boxes, _, size = self.dataset.annotations(i)
        else:
            image, target = self.dataset[i]
            boxes, size = target["boxes"], tuple(image.shape[-2:])
        return torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4), tuple(float(v) for v in size)

    def set_epoch(self, epoch: int) -> None:
        """The epoch about to be trained: whether the ranges apply (``ranges_from_epoch``)."""
        self.epoch = int(epoch)

    @property
    def ranges_active(self) -> bool:
        """Whether this epoch's items carry the ranges (SNIP) or not (MST, also during a warm start)."""
        return self.ranges and self.epoch >= self.ranges_from_epoch

    @property
    def pixels(self) -> float:
        """Pixels of one epoch's windows."""
        return float(sum(float((c.window[2] - c.window[0]) * (c.window[3] - c.window[1])) for _, c in self.items))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int):
        i, chip = self.items[k]
        image, target = self.dataset[i]
        resized, _, _ = resize_image(image, float(chip.scale))
        x1, y1, x2, y2 = (int(round(v)) for v in chip.window.tolist())
        pixels = resized[:, y1:y2, x1:x2]
        area = self.levels[chip.level][1] if self.ranges_active else None
        t = chip_targets(chip, target, area, min_size=self.min_size)
        return DetectionItem((pixels, {**t, "image_index": i, "chip": chip}))
