"""SNIP (thesis chapter 2): scale specs, valid object-size ranges, anchor
invalidation and pyramid inference. Depends on :mod:`scalekit.ops` (Soft-NMS)
and :mod:`scalekit.boxes`."""

from scalekit.scale.levels import (
    SNIP_LEVELS,
    SNIPER_LEVELS,
    AreaRange,
    ScaleSpec,
    invalidate_anchors,
    valid_mask,
)
from scalekit.scale.pyramid import Pyramid, register_detector_adapter, resize_image

__all__ = ["ScaleSpec", "AreaRange", "SNIP_LEVELS", "SNIPER_LEVELS", "valid_mask", "invalidate_anchors",
           "Pyramid", "resize_image", "register_detector_adapter"]
