"""SNIPER (thesis chapter 3): chip generation, labels inside chips, chip
crops, a chip dataset, statistics and pictures; SNIP's training set (chapter
2: whole images or sub-image chips per pyramid level, §2.6). Depends on
:mod:`scalekit.scale` (levels and ranges) and :mod:`scalekit.boxes`."""

from scalekit.chips.crops import chip_stats, chip_targets, crop_chip, draw_chips
from scalekit.chips.dataset import ChipDataset, DetectionItem, LevelDataset, collate_chips
from scalekit.chips.generator import Chip, ChipGenerator, sample_negatives
from scalekit.chips.snip import snip_chips

__all__ = ["Chip", "ChipGenerator", "chip_targets", "crop_chip", "ChipDataset", "LevelDataset", "DetectionItem",
           "collate_chips", "chip_stats", "draw_chips", "snip_chips", "sample_negatives"]
