"""SNIP (thesis chapter 2): scale specs, valid object-size ranges, anchor
invalidation and pyramid inference. Depends on :mod:`scalekit.ops` (Soft-NMS)
and :mod:`scalekit.boxes`.

The free function ``valid_mask(boxes, area_range)`` is gone: it was a second
spelling of :meth:`AreaRange.valid_mask` (one size test lives in
:func:`scalekit.boxes.size_in_range`)."""

from scalekit.scale.levels import (
    SNIP_LEVELS,
    SNIPER_LEVELS,
    AreaRange,
    ScaleSpec,
    invalidate_anchors,
    scaled_levels,
)
from scalekit.scale.pyramid import Pyramid, register_detector_adapter, resize_image, tune_ranges

__all__ = ["ScaleSpec", "AreaRange", "SNIP_LEVELS", "SNIPER_LEVELS", "scaled_levels", "invalidate_anchors",
           "Pyramid", "resize_image", "register_detector_adapter", "tune_ranges"]
