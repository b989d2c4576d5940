"""Sliced detection of one large image: the slices of a grid through any detector,
batch by batch, boxes back in image coordinates, one merge."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor

from scalekit._args import integer, real
from scalekit._detector import as_detections, level_detector
from scalekit._image import as_image_tensor, to_float_image
from scalekit.progress import progress as _progress
from scalekit.scale import ScaleSpec, resize_image
from scalekit.slicing.grid import slice_grid, slice_sizes
from scalekit.slicing.merge import MergeSettings, _check_merge, merge_detections

__all__ = ["sliced_detect"]


def _full_image_spec(full_image, slice_h: int, slice_w: int) -> ScaleSpec | None:
    if full_image is False or full_image is None:
        return None
    if full_image is True:
        return ScaleSpec.fit_longer(max(slice_h, slice_w))
    if isinstance(full_image, ScaleSpec):
        return full_image
    raise TypeError(f"full_image must be True, False or a scalekit.scale.ScaleSpec (the size of the full-image "
                    f"pass), got {type(full_image).__name__} {full_image!r}")


def _slices(image: Tensor, windows: Tensor, batch_size: int) -> Iterator[tuple[Tensor, list[Tensor]]]:
    """The windows ``batch_size`` at a time, with their crops as float images; a crop
    exists only while its batch runs (each is a copy: a detector may write into it)."""
    for first in range(0, windows.shape[0], batch_size):
        batch = windows[first:first + batch_size]
        crops = []
        for x1, y1, x2, y2 in batch.tolist():
            crop = image[:, y1:y2, x1:x2]
            crops.append(crop.clone() if crop.is_floating_point() else to_float_image(crop))
        yield batch, crops


def _in_image(d: dict, dx: float, dy: float, scale_x: float, scale_y: float, height: int, width: int,
              score_threshold: float) -> tuple[Tensor, Tensor, Tensor]:
    """A slice's (or the resized full image's) detections in image pixels, clipped to the image,
    those below ``score_threshold`` dropped."""
    boxes = d["boxes"]
    scale = torch.tensor([scale_x, scale_y, scale_x, scale_y], dtype=boxes.dtype, device=boxes.device)
    shift = torch.tensor([dx, dy, dx, dy], dtype=boxes.dtype, device=boxes.device)
    bound = torch.tensor([width, height, width, height], dtype=boxes.dtype, device=boxes.device)
    boxes = torch.minimum((boxes * scale + shift).clamp(min=0), bound)
    keep = d["scores"] >= score_threshold
    return boxes[keep], d["scores"][keep].to(torch.float32), d["labels"][keep].to(torch.int64)


def sliced_detect(detector, image, *, slice_size=512, overlap=0.2, full_image=True, batch_size: int = 4,
                  merge="nms", iou_threshold: float = 0.5, match_metric: str = "iou", class_agnostic: bool = False,
                  score_threshold: float = 0.001, sigma: float = 0.5, soft_nms_method: str = "gaussian",
                  max_detections: int | None = None, progress: bool = False) -> dict:
    """Detect objects in a large image slice by slice: ``{"boxes" [N, 4], "scores" [N], "labels" [N]}``.

    The image is cut into the windows of :func:`slice_grid` (``slice_size``
    pixels, ``overlap`` between neighbours, the last row and column shifted
    inside the image: SAHI's grid). Every slice reaches the detector at its
    own size, ``batch_size`` slices per call; the boxes found in a slice are
    shifted to image pixels and clipped to the image. With ``full_image`` the
    whole image is also run once, resized (default: its longer side to the
    slice's, so that the pass costs one slice; pass a
    :class:`~scalekit.scale.ScaleSpec` for another size, ``ScaleSpec.fixed(1.0)``
    for the image as it is, as SAHI does) — only when there is more than one
    slice, as SAHI. Detections below ``score_threshold`` are dropped, and all
    are merged once (``merge``, below).

    ``detector`` is what :meth:`scalekit.scale.Pyramid.detect` takes, found the
    same way: a torchvision detection model in eval mode (recognised by its
    class; the slices reach its backbone at the slice size, padded to a
    multiple of 32, instead of being resized to the model's ``min_size``), a
    detector taught by :func:`~scalekit.scale.register_detector_adapter`, or
    any callable ``detector(image [C, H, W]) -> (boxes [N, 4], scores [N],
    labels [N])`` (or a dict with those keys) in the pixels of the image it is
    given. Non-finite detections raise a ``ValueError``.

    ``image``: a ``[C, H, W]`` float tensor in ``[0, 1]`` or a ``uint8``
    tensor (divided by 255, the rule of :class:`~scalekit.scale.Pyramid`), a
    PIL image or a file path (read as ``uint8``).

    **Memory.** Slices are cut as their batch runs and dropped after it: at
    any time at most ``batch_size`` crops exist (``batch_size x C x
    slice_height x slice_width`` float32 values, plus what the detector
    allocates for that batch), whatever the number of slices. Besides them the
    image itself is held (as given: a ``uint8`` image stays ``uint8``, a file
    is read as ``uint8``), and the full-image pass (run first, before any
    slice) briefly holds a float copy of one channel at a time while it resizes
    the image (of the whole image when it is not resized). Peak resident
    memory above a 4000 x 6000 ``uint8`` image (72 MB) in 512-px slices (150
    of them), with a detector that allocates nothing: 12 MB with
    ``batch_size=4`` and no full-image pass, 48 MB with ``batch_size=16``,
    94 MB with ``batch_size=4`` and the full-image pass (its one float channel);
    all 150 crops at once would be 472 MB.
    The detections of all slices are kept until the merge (24 bytes each).

    Args:
        detector: see above.
        image: see above.
        slice_size: an int ``>= 1`` or ``(height, width)`` (512, SNIPER's chip
            size, thesis §3.3).
        overlap: a ratio in ``[0, 1)`` or ``(height, width)`` ratios (0.2, SAHI's default).
        full_image: ``True`` (default), ``False`` or a ``ScaleSpec``, see above.
        batch_size: slices per detector call, ``>= 1``.
        merge: ``"nms"`` (greedy NMS, default), ``"soft_nms"``, ``"greedy_nmm"``
            or ``"nmm"`` (SAHI's non-maximum merging: matched boxes merge into
            their union with the highest score, :func:`scalekit.ops.greedy_nmm`;
            SAHI's own default is ``"greedy_nmm"`` with ``match_metric="ios"``), or a callable
            ``(boxes, scores, labels) -> keep`` (indices or a boolean mask) or
            ``-> (boxes, scores, labels)``: see :func:`merge_detections`.
        iou_threshold: boxes overlap when their IoU is ``> iou_threshold``, in
            ``[0, 1]`` (0.5, SAHI's benchmark setting; SAHI itself merges at
            ``>=``: only an IoU exactly at the threshold is treated apart). The
            merges match at ``>=``, as SAHI.
        match_metric: ``"iou"`` or ``"ios"`` (intersection over the smaller
            area), the match of ``"greedy_nmm"`` and ``"nmm"``.
        class_agnostic: merge boxes of different labels too (default: per label).
        score_threshold: detections below it are dropped before the merge, and
            Soft-NMS drops those decayed below it (0.001, SNIPER's, as ``Pyramid``).
        sigma, soft_nms_method: Soft-NMS's decay (``"gaussian"``, sigma 0.5,
            the paper's; see :func:`scalekit.ops.soft_nms`).
        max_detections: keep the highest-scored this many after merging, or ``None`` for all.
        progress: show :mod:`scalekit.progress`'s bar on stderr, one step per batch
            (``sliced_detect [####....] batches/total``).

    Returns:
        ``{"boxes" [N, 4] float32, "scores" [N] float32, "labels" [N] int64}``
        in image pixels.

    Example:
        >>> import torch
        >>> from scalekit.slicing import sliced_detect
        >>> calls = []
        >>> def detector(image):  # finds one 10x10 box at the centre of whatever it is given
        ...     calls.append(tuple(image.shape[-2:]))
        ...     h, w = image.shape[-2:]
        ...     return torch.tensor([[w / 2 - 5, h / 2 - 5, w / 2 + 5, h / 2 + 5]]), torch.tensor([0.9]), torch.tensor([1])
        >>> dets = sliced_detect(detector, torch.zeros(3, 200, 300), slice_size=100, overlap=0.0, full_image=False)
        >>> calls  # six 100x100 slices
        [(100, 100), (100, 100), (100, 100), (100, 100), (100, 100), (100, 100)]
        >>> dets["boxes"][:2]  # the first two slices' centres, in image pixels
        tensor([[ 45.,  45.,  55.,  55.],
                [145.,  45., 155.,  55.]])
    """
    (sh, sw) = slice_sizes(slice_size)
    spec = _full_image_spec(full_image, sh, sw)
    batch_size = integer("batch_size", batch_size, minimum=1)
    _check_merge(merge)
    settings = MergeSettings(iou_threshold, class_agnostic, sigma, soft_nms_method, score_threshold, match_metric)
    if max_detections is not None:
        max_detections = integer("max_detections", max_detections, minimum=1)
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be True or False, got {type(progress).__name__} {progress!r}")
    if isinstance(image, Tensor) and image.dim() == 4:
        raise ValueError(f"image must be one [C, H, W] image, got a batch {list(image.shape)}: "
                         "call sliced_detect once per image")
    image = as_image_tensor(image)
    height, width = image.shape[-2:]
    windows = slice_grid(height, width, (sh, sw), overlap)  # checks overlap
    run = level_detector(detector)
    threshold = settings.score_threshold
    found: list[tuple[Tensor, Tensor, Tensor]] = []

    if spec is not None and windows.shape[0] > 1:  # first, so that its float copy is gone before any slice
        factor = real("full_image's factor", spec.factor(height, width), positive=True)
        if (max(1, round(height * factor)), max(1, round(width * factor))) != (height, width):
            # one channel at a time (bilinear resizing is per channel): a float copy of one
            # channel exists at a time, not of the whole image
            channels = [resize_image(to_float_image(image[c:c + 1]), factor) for c in range(image.shape[0])]
            whole, fy, fx = torch.cat([r[0] for r in channels]), channels[0][1], channels[0][2]
            del channels
        else:
            whole = to_float_image(image)
            whole, fy, fx = (whole.clone() if whole.data_ptr() == image.data_ptr() else whole), 1.0, 1.0
        results = run([whole])
        del whole
        if len(results) != 1:
            raise ValueError(f"the detector returned {len(results)} results for 1 image (the full-image pass)")
        d = as_detections(results[0], "the full-image pass")
        found.append(_in_image(d, 0.0, 0.0, 1.0 / fx, 1.0 / fy, height, width, threshold))

    n_batches = math.ceil(windows.shape[0] / batch_size)
    for batch, crops in _progress(_slices(image, windows, batch_size), total=n_batches, desc="sliced_detect",
                                  enabled=progress):
        results = run(crops)
        del crops
        if len(results) != batch.shape[0]:
            raise ValueError(f"the detector returned {len(results)} results for {batch.shape[0]} slices")
        for (x1, y1, _, _), result in zip(batch.tolist(), results):
            d = as_detections(result, f"slice ({x1}, {y1})")
            found.append(_in_image(d, float(x1), float(y1), 1.0, 1.0, height, width, threshold))

    boxes = torch.cat([f[0] for f in found]) if found else torch.zeros(0, 4)
    scores = torch.cat([f[1] for f in found]) if found else torch.zeros(0)
    labels = torch.cat([f[2] for f in found]) if found else torch.zeros(0, dtype=torch.int64)
    out = merge_detections(boxes, scores, labels, merge, settings=settings)
    if max_detections is not None:
        order = torch.argsort(out["scores"], descending=True, stable=True)[:max_detections]
        out = {k: v[order] for k, v in out.items()}
    return out
