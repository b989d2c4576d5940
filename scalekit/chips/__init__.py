"""SNIPER (thesis chapter 3): chip generation, labels inside chips, chip
crops, a chip dataset, statistics and pictures; SNIP's sub-image chips
(chapter 2, §2.6.2). Depends on
:mod:`scalekit.scale` (levels and ranges)."""

from scalekit.chips.crops import chip_stats, chip_targets, crop_chip, draw_chips
from scalekit.chips.dataset import ChipDataset, collate_chips
from scalekit.chips.generator import Chip, ChipGenerator
from scalekit.chips.snip import snip_chips

__all__ = ["Chip", "ChipGenerator", "chip_targets", "crop_chip", "ChipDataset", "collate_chips", "chip_stats", "draw_chips",
           "snip_chips"]
