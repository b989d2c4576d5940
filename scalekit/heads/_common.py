"""What both heads share: target checks, Fast R-CNN label assignment with
ignore boxes, position-sensitive voting, smooth-L1, online hard example mining
(OHEM) and per-image post-processing. The heads import from here and never
from each other."""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from scalekit.boxes import BOX_WEIGHTS, decode_boxes, encode_boxes, match_rois, near_ignore, out_of_range
from scalekit.ops import DeformPSRoIPoolPack, deform_ps_roi_pool, nms, ps_roi_align

IGNORE = -1  # label of a RoI that is neither foreground nor background


def check_targets(targets, num_images: int, num_classes: int) -> None:
    """Targets are torchvision's dicts, ``{"boxes", "labels"}`` plus an optional ``"ignore_boxes"``."""
    if len(targets) != num_images:
        raise ValueError(f"targets must hold one dict per image ({num_images}), got {len(targets)}")
    for i, t in enumerate(targets):
        if "boxes" not in t or "labels" not in t:
            raise ValueError(f"targets[{i}] must have 'boxes' [G, 4] and 'labels' [G]")
        if t["boxes"].dim() != 2 or t["boxes"].shape[1] != 4 or t["labels"].shape != (t["boxes"].shape[0],):
            raise ValueError(f"targets[{i}]: boxes must be [G, 4] and labels [G], got "
                             f"{list(t['boxes'].shape)} and {list(t['labels'].shape)}")
        if t["labels"].numel() and (t["labels"].min() < 1 or t["labels"].max() > num_classes):
            raise ValueError(label_error(f"targets[{i}]['labels']", t["labels"], num_classes))
        ignore = t.get("ignore_boxes")
        if ignore is not None and (ignore.dim() != 2 or ignore.shape[1] != 4):
            raise ValueError(f"targets[{i}]: ignore_boxes must be [I, 4], got {list(ignore.shape)}")
        out_of_range(t["boxes"], t.get("valid_range"), name=f"targets[{i}]['valid_range']")  # checks it


def assign(proposals, targets, inclusive: bool, iou_threshold: float = 0.5, *, ignore_rule: str = "proposal"):
    """Per-RoI class label and box regression target.

    Labels: the matched ground truth's class, 0 for background, ``IGNORE``
    (-1) for a RoI that is neither (SNIP and SNIPER, thesis §2.6.1, §3.3.4):

    * ``ignore_rule="proposal"`` (default, the thesis' rule): a RoI whose own
      size (``sqrt(area)``) lies outside ``target["valid_range"]`` (``[lo, hi)``
      in the target's pixels; absent: every size is valid) is ignored — "We do
      not filter ground-truth boxes based on R^i. Instead, proposals which do
      not fall in R^i are ignored during training" (§3.3.4). Ground truth
      appended to the proposals is judged the same way. A RoI in range whose
      best match is an ignore box (IoU at least ``iou_threshold``, above its
      IoU with every object) is ignored too: ignore boxes (out-of-range
      ground truth, crowd regions) carry no class to learn, and are not background.
    * ``ignore_rule="gt"`` (scalekit before issue 20): only the ignore-box match;
      ``valid_range`` is not read, so a large background RoI at the finest scale
      trains as background.

    Args:
        proposals: per image ``[R_i, 4]``.
        targets: per image ``{"boxes", "labels"[, "ignore_boxes", "valid_range"]}``.
        inclusive: foreground at IoU ``>= iou_threshold`` (R-FCN) or ``>`` (R-FCN-3000).
        iou_threshold: foreground IoU (0.5).
        ignore_rule: ``"proposal"`` or ``"gt"``.

    Returns:
        ``([R] int64 labels, [R, 4] box targets)`` over all images.
    """
    if ignore_rule not in ("proposal", "gt"):
        raise ValueError(f"ignore_rule must be 'proposal' or 'gt', got {ignore_rule!r}")
    labels, box_targets = [], []
    for p, t in zip(proposals, targets):
        m = match_rois(p, t["boxes"], iou_threshold, inclusive=inclusive)
        lab = torch.where(m >= 0, t["labels"][m.clamp(min=0)] if t["labels"].numel() else m, 0)
        ignore = t.get("ignore_boxes")
        if ignore is not None and ignore.numel():
            lab = torch.where(near_ignore(p, ignore, iou_threshold, inclusive=True, gt_boxes=t["boxes"]), IGNORE, lab)
        if ignore_rule == "proposal":
            lab = torch.where(out_of_range(p, t.get("valid_range")), IGNORE, lab)
        labels.append(lab)
        gt = t["boxes"][m.clamp(min=0)] if t["boxes"].numel() else p
        box_targets.append(encode_boxes(p, gt.to(p.dtype)))
    return torch.cat(labels), torch.cat(box_targets)


def detections(boxes: Tensor, scores: Tensor, image_index: Tensor, num_images: int, nms,
               score_threshold: float, detections_per_image: int) -> list[dict]:
    """Per image: candidates (RoI, class) above the threshold, NMS, the best N."""
    out = []
    for i in range(num_images):
        s = scores[image_index == i]
        b = boxes[image_index == i]
        roi, cls = (s > score_threshold).nonzero(as_tuple=True)
        cand_boxes, cand_scores, cand_labels = b[roi], s[roi, cls], cls + 1
        keep = nms(cand_boxes, cand_scores, cand_labels)[:detections_per_image]
        out.append({"boxes": cand_boxes[keep], "scores": cand_scores[keep], "labels": cand_labels[keep]})
    return out


class PSVote(nn.Module):
    """Position-sensitive pooling of each RoI into ``k x k`` bins, voted by
    averaging: ``[R, channels]`` from ``[N, channels * k * k, H, W]`` maps.
    ``deformable=True`` pools with deformable PSRoI pooling and its own
    offset branch (the one of :class:`~scalekit.ops.DeformPSRoIPoolPack`)
    instead of :func:`~scalekit.ops.ps_roi_align`. The spatial scale comes
    with each call: a head may infer it from the sizes of the images."""

    def __init__(self, channels: int, pool_size: int, sampling_ratio: int, deformable: bool = False) -> None:
        super().__init__()
        self.pool_size, self.sampling_ratio = pool_size, sampling_ratio
        self.pool = (DeformPSRoIPoolPack(channels, pool_size, 1.0, sample_per_part=sampling_ratio)
                     if deformable else None)

    def forward(self, maps: Tensor, rois: Tensor, spatial_scale: float) -> Tensor:
        if self.pool is None:
            return ps_roi_align(maps, rois, self.pool_size, spatial_scale, self.sampling_ratio).mean((2, 3))
        pool = self.pool
        kwargs = dict(sample_per_part=pool.sample_per_part, trans_std=pool.trans_std)
        plain = deform_ps_roi_pool(maps, rois, None, pool.output_size, spatial_scale, **kwargs)
        offset = pool.offset_fc(plain.flatten(1)).view(plain.shape[0], 2, *pool.part_size)
        return deform_ps_roi_pool(maps, rois, offset, pool.output_size, spatial_scale, **kwargs).mean((2, 3))


def clip_to_images(boxes: Tensor, image_index: Tensor, image_sizes) -> Tensor:
    """Clip ``[R, 4]`` boxes to their image, ``image_sizes[i] = (height, width)``; ``None``: unchanged."""
    if image_sizes is None:
        return boxes
    size = torch.as_tensor(image_sizes, dtype=boxes.dtype, device=boxes.device).reshape(-1, 2)[image_index]
    return boxes.clamp(min=0).minimum(torch.stack([size[:, 1], size[:, 0], size[:, 1], size[:, 0]], 1))


def hard_examples(per_roi_loss: Tensor, image_index: Tensor, per_image: int | None, eligible: Tensor) -> Tensor:
    """OHEM (Shrivastava et al. 2016, as R-FCN): mask of the ``per_image``
    highest-loss ``eligible`` RoIs of each image (all eligible RoIs when
    ``per_image`` is None). Ignored RoIs are never eligible."""
    if per_image is None:
        return eligible.clone()
    keep = torch.zeros_like(eligible)
    for i in image_index.unique():
        members = ((image_index == i) & eligible).nonzero().flatten()
        top = per_roi_loss[members].detach().topk(min(per_image, members.numel())).indices
        keep[members[top]] = True
    return keep


def classification_losses(logits: Tensor, labels: Tensor, box_deltas: Tensor, box_targets: Tensor,
                          image_index: Tensor, ohem: int | None, beta: float) -> tuple[Tensor, Tensor, Tensor]:
    """Softmax loss over ``labels`` (IGNORE excluded) and smooth-L1 on foreground,
    averaged over the RoIs OHEM keeps; also returns the kept mask."""
    eligible = labels != IGNORE
    cls = F.cross_entropy(logits, labels.clamp(min=0), reduction="none") * eligible
    box = F.smooth_l1_loss(box_deltas, box_targets, beta=beta, reduction="none").sum(1) * (labels > 0)
    keep = hard_examples(cls + box, image_index, ohem, eligible)
    n = keep.sum().clamp(min=1)
    return cls[keep].sum() / n, box[keep].sum() / n, keep


def rois_with_index(proposals: list[Tensor]) -> tuple[Tensor, Tensor]:
    """``[R, 5]`` RoIs (batch index first) and the ``[R]`` image index from per-image boxes."""
    if len(proposals) == 0:
        raise ValueError("proposals must hold one [L, 4] tensor per image")
    for i, p in enumerate(proposals):
        if not isinstance(p, Tensor) or p.dim() != 2 or p.shape[1] != 4:
            raise ValueError(f"proposals[{i}] must be [L, 4] boxes (x1, y1, x2, y2), got "
                             f"{list(p.shape) if isinstance(p, Tensor) else type(p).__name__}")
        if not p.is_floating_point():
            raise TypeError(f"proposals[{i}] must be float boxes, got {p.dtype}")
    idx = torch.cat([torch.full((p.shape[0],), i, dtype=torch.int64, device=p.device) for i, p in enumerate(proposals)])
    boxes = torch.cat(list(proposals))
    return torch.cat([idx[:, None].to(boxes.dtype), boxes], 1), idx


# ----------------------------------------------------------------------------- argument checks


def check_int(value, name: str, minimum: int) -> int:
    """``value`` as a Python int ``>= minimum`` (numpy integers too); a clear error otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_real(value, name: str, minimum: float, *, strict: bool = False) -> float:
    """``value`` as a finite Python float ``>= minimum`` (``>`` if ``strict``; numpy scalars too)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value) or (value <= minimum if strict else value < minimum):
        raise ValueError(f"{name} must be a finite number {'>' if strict else '>='} {minimum}, got {value}")
    return value


def label_error(name: str, labels: Tensor, num_classes: int) -> str:
    """The message for object labels outside ``1..num_classes``: what came, and the convention."""
    bad = labels[(labels < 1) | (labels > num_classes)].unique()[:5].tolist()
    return (f"{name} holds {bad} outside [1, num_classes={num_classes}]: object labels are 1..C and 0 is the "
            f"background, and the head's num_classes counts the C object classes without it (torchvision's "
            f"FasterRCNN(num_classes=...) counts the background too). Map a dataset's category ids to 1..C first "
            f"(scalekit.datasets.CocoDetection does), and build the head with num_classes >= {int(labels.max())}"
            if int(labels.max()) > num_classes else
            f"{name} holds {bad} outside [1, num_classes={num_classes}]: 0 is the background, object labels are "
            f"1..C; give background-only images an empty 'boxes' [0, 4] and 'labels' [0]")


# ----------------------------------------------------------------------------- spatial scale

# torchvision's GeneralizedRCNNTransform pads a batch to a multiple of 32 pixels: a feature map
# may reach that much past the largest image.
BATCH_PADDING = 32


def _scale_fits(scale: float, feature_hw, image_hw, padding: int) -> bool:
    return all(math.floor(s * scale) <= f <= math.ceil((s + padding) * scale) + 1
               for f, s in zip(feature_hw, image_hw))


def resolve_spatial_scale(spatial_scale: float | None, features: Tensor, image_sizes,
                          padding: int = BATCH_PADDING) -> float:
    """The scale of ``features`` ``[N, C, H, W]`` over images of ``image_sizes`` (``(height, width)`` each).

    ``spatial_scale`` given and ``image_sizes`` known: checked, and a value
    the map cannot have (``H`` must lie between ``floor(height * scale)`` and
    ``ceil((height + padding) * scale) + 1``, for the largest height of the
    batch, and ``W`` likewise) is a ``ValueError`` that names the
    scale the map has. ``spatial_scale=None``: inferred, as torchvision's
    ``MultiScaleRoIAlign`` does, as the power of two ``2**-n`` that fits;
    several fitting (tiny images): the nearest to ``H / height``.
    ``padding``: how far past the largest image a batch is padded
    (torchvision: 32).
    """
    if image_sizes is None:
        if spatial_scale is None:
            raise ValueError("spatial_scale=None infers the scale from the images' sizes: pass image_sizes "
                             "([(height, width)] per image) to forward, or give the head a spatial_scale")
        return spatial_scale
    sizes = check_image_sizes(image_sizes)
    image_hw = [max(h for h, _ in sizes), max(w for _, w in sizes)]
    feature_hw = tuple(features.shape[-2:])
    fits = [2.0 ** -n for n in range(12) if _scale_fits(2.0 ** -n, feature_hw, image_hw, padding)]
    ratio = math.log2(max(feature_hw[0], 1) / image_hw[0]) + math.log2(max(feature_hw[1], 1) / image_hw[1])
    nearest = min(fits, key=lambda s: abs(2 * math.log2(s) - ratio)) if fits else None
    if spatial_scale is not None:
        if _scale_fits(spatial_scale, feature_hw, image_hw, padding):
            return spatial_scale
        hint = f"1/{round(1 / nearest)}" if fits else "its feature-map size over the image size"
        raise ValueError(f"spatial_scale={spatial_scale:g} (1/{1 / spatial_scale:g}) does not fit a "
                         f"{feature_hw[0]}x{feature_hw[1]} feature map of images up to "
                         f"{image_hw[0]:g}x{image_hw[1]:g}: that map is at about {hint}; pass "
                         f"spatial_scale={hint}, or spatial_scale=None to infer it")
    if not fits:
        raise ValueError(f"cannot infer spatial_scale: a {feature_hw[0]}x{feature_hw[1]} feature map of images "
                         f"up to {image_hw[0]:g}x{image_hw[1]:g} is at no power of two; pass spatial_scale")
    return nearest


# ----------------------------------------------------------------------------- the heads' shared contract


def check_image_sizes(image_sizes) -> list[tuple[float, float]]:
    """``(height, width)`` of each image as Python floats; a clear error unless positive and finite.

    Checked in Python, not with tensor reductions, so that an exported or compiled
    detector (whose image sizes are known while tracing) does not branch on tensor data.
    """
    try:
        rows = image_sizes.tolist() if isinstance(image_sizes, Tensor) else list(image_sizes)
        sizes = [(float(h), float(w)) for h, w in rows]
    except (TypeError, ValueError) as exc:
        raise TypeError(f"image_sizes must be (height, width) pairs, one per image, got {image_sizes!r}") from exc
    if not sizes:
        raise ValueError(f"image_sizes must be (height, width) pairs, one per image, got {image_sizes!r}")
    if not all(math.isfinite(v) and v > 0 for hw in sizes for v in hw):
        raise ValueError(f"image_sizes must be positive and finite, got {image_sizes!r}")
    return sizes


def _tracing() -> bool:
    """Inside torch.export or torch.compile, where a check on tensor data would be a graph break or an error."""
    return torch.compiler.is_compiling() or torch.compiler.is_exporting()


def split_rois(rois: Tensor, num_images: int) -> tuple[list[Tensor], Tensor]:
    """Per-image ``[L, 4]`` boxes and the ``[R]`` image index of ``[R, 5]`` RoIs (batch index first, sorted)."""
    if rois.dim() != 2 or rois.shape[1] != 5:
        raise ValueError(f"outputs['rois'] must be [R, 5] (batch index first), got {list(rois.shape)}")
    index = rois[:, 0].long()
    if index.numel() and (index.min() < 0 or index.max() >= num_images):
        raise ValueError(f"outputs['rois'] name images up to {int(index.max())}, but {num_images} images were given")
    counts = torch.bincount(index, minlength=num_images).tolist()
    return list(rois[:, 1:].split(counts)), index


class RoIHead(nn.Module):
    """The contract of :class:`~scalekit.heads.RFCNHead` and :class:`~scalekit.heads.DecoupledHead`
    (written out in :mod:`scalekit.heads`), and what both do the same way:
    spatial scale, RoIs, label assignment, decoded boxes, objectness."""

    num_classes: int
    spatial_scale: float | None

    def rois(self, features: Tensor, proposals: list[Tensor], image_sizes) -> tuple[Tensor, float]:
        """``[R, 5]`` RoIs of ``proposals`` (one ``[L, 4]`` per image of ``features``) and the spatial scale."""
        if not isinstance(features, Tensor) or features.dim() != 4:
            raise ValueError(f"features must be one [N, C, H, W] map, got "
                             f"{list(features.shape) if isinstance(features, Tensor) else type(features).__name__}")
        if isinstance(proposals, Tensor) or len(proposals) != features.shape[0]:
            raise ValueError(f"proposals must be a list of one [L, 4] tensor per image ({features.shape[0]}), got "
                             f"{'a tensor' if isinstance(proposals, Tensor) else len(proposals)}")
        if image_sizes is not None and len(image_sizes) != features.shape[0]:
            raise ValueError(f"image_sizes must hold one (height, width) per image ({features.shape[0]}), "
                             f"got {len(image_sizes)}")
        return rois_with_index(proposals)[0], resolve_spatial_scale(self.spatial_scale, features, image_sizes)

    def targets_for(self, outputs: dict, targets: list[dict], *, inclusive: bool, iou_threshold: float):
        """Per-RoI labels and box targets of ``outputs["rois"]`` (:func:`assign`), and the image index."""
        rois = outputs["rois"]
        seen = int(rois[:, 0].max()) + 1 if rois.dim() == 2 and rois.numel() else 0
        check_targets(targets, max(seen, len(targets)), self.num_classes)
        proposals, index = split_rois(outputs["rois"], len(targets))
        labels, box_targets = assign(proposals, targets, inclusive=inclusive, iou_threshold=iou_threshold)
        return labels, box_targets, index

    def objectness(self, outputs: dict) -> Tensor:
        """``[R]``: ``1 - p(background)`` of each RoI, class-agnostic (thesis §4.6.3)."""
        return 1 - outputs["det_logits"].float().softmax(1)[:, 0]

    def boxes(self, outputs: dict, image_sizes) -> tuple[Tensor, Tensor]:
        """``[R, 4]`` decoded boxes (class-agnostic) clipped to their image, and the ``[R]`` image index."""
        rois = outputs["rois"]
        index = rois[:, 0].long()
        sizes = check_image_sizes(image_sizes)
        if not _tracing() and index.numel() and index.max() >= len(sizes):
            raise ValueError(f"image_sizes holds {len(sizes)} images, outputs['rois'] name {int(index.max()) + 1}")
        boxes = decode_boxes(rois[:, 1:], outputs["box_deltas"].to(rois.dtype), BOX_WEIGHTS)
        return clip_to_images(boxes, index, sizes), index

    @torch.no_grad()
    def postprocess_objectness(self, outputs: dict, image_sizes, *, score_threshold: float = 0.0,
                               nms_threshold: float = 0.3, detections_per_image: int = 100) -> list[dict]:
        """Class-agnostic detections per image: each RoI's decoded box scored by
        :meth:`objectness`, NMS at ``nms_threshold`` (R-FCN's 0.3), the best
        ``detections_per_image``; every label is 1 ("object"). ``image_sizes``:
        ``(height, width)`` of each image of the forward pass (boxes are clipped to it). Thesis §4.6.3
        measures objectness on classes the detector never saw this way."""
        boxes, index = self.boxes(outputs, image_sizes)
        return detections(boxes, self.objectness(outputs)[:, None], index, len(image_sizes),
                          lambda b, s, lab: nms(b, s, nms_threshold), score_threshold, detections_per_image)
