"""A dataset of chips over any detection dataset (thesis §3.3)."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from scalekit.chips.crops import crop_chip
from scalekit.chips.generator import ChipGenerator

__all__ = ["ChipDataset", "collate_chips"]


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
    images, targets = zip(*batch) if batch else ((), ())
    return list(images), list(targets)


class ChipDataset(Dataset):
    """Chips of every image of a detection dataset, resampled each epoch.

    ``dataset[i]`` must give ``(image [C, H, W], {"boxes": [N, 4], "labels": [N]})``;
    if it has ``annotations(i) -> (boxes, labels, (height, width))`` (as
    :class:`~scalekit.datasets.CocoDetection`), chips are planned without
    loading images. Item ``k`` is ``(chip_image [C, S, S], target)`` with the
    target torchvision detection models take (``"boxes"``, ``"labels"`` of
    the *valid* boxes) plus ``"ignore_boxes"`` (invalid boxes, for
    :func:`~scalekit.scale.invalidate_anchors`), ``"image_index"`` and ``"chip"``.

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
        self.set_epoch(0)

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
        """Resample this epoch's negative chips."""
        rng = np.random.default_rng((self.seed, epoch))
        self.items = []
        for i, (pos, neg) in enumerate(zip(self._positives, self._negatives)):
            self.items += [(i, c) for c in pos]
            if neg:
                k = min(self.generator.neg_chips_per_image, len(neg))
                self.items += [(i, neg[j]) for j in sorted(rng.choice(len(neg), size=k, replace=False).tolist())]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int):
        i, chip = self.items[k]
        image, _ = self.dataset[i]
        boxes, labels, _ = self._annotations[i]
        pixels, t = crop_chip(image, {"boxes": boxes, "labels": labels}, chip, self.generator.chip_size,
                              self.generator.levels, min_size=self.min_size)
        target = {"boxes": t["boxes"][t["valid"]], "labels": t["labels"][t["valid"]],
                  "ignore_boxes": t["boxes"][~t["valid"]], "image_index": i, "chip": chip}
        return pixels, target
