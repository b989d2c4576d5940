"""Sliced detection: small objects in large images with any detector, slice by slice.

The inference SAHI popularised (Akyon et al., *Slicing Aided Hyper Inference*,
ICIP 2022): a grid of fixed-size overlapping slices, each run at its own size,
boxes mapped back and merged. Here the slices stream through the detector in
batches (memory bounded by the batch, not by the number of slices) and merge on
scalekit's NMS kernels. Not in the thesis; the thesis' own answer to small
objects, a pyramid whose finest level is processed in 512-px chips (§3.3), is
:class:`scalekit.scale.Pyramid` and :mod:`scalekit.chips`.

* :func:`slice_grid` — the windows (SAHI's ``get_slice_bboxes``, equal to it);
* :func:`sliced_detect` — image to detections in one call;
* :func:`merge_detections` — the merge step alone (NMS, Soft-NMS or a callable).

Depends on :mod:`scalekit.scale` for finding the detector (the seam
:class:`~scalekit.scale.Pyramid` uses: torchvision detectors by their class,
adapters from :func:`~scalekit.scale.register_detector_adapter`), for
:class:`~scalekit.scale.ScaleSpec` and :func:`~scalekit.scale.resize_image`, and
on :mod:`scalekit.ops`; it never imports torchvision itself.
"""

from scalekit.slicing.detect import sliced_detect
from scalekit.slicing.grid import MAX_SLICES, slice_grid
from scalekit.slicing.merge import NAMED_MERGES, MergeSettings, merge_detections

__all__ = ["slice_grid", "MAX_SLICES", "sliced_detect", "merge_detections", "MergeSettings", "NAMED_MERGES"]
