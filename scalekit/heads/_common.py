"""What both heads share: target checks, Fast R-CNN label assignment with
ignore boxes, position-sensitive voting, smooth-L1, online hard example mining
(OHEM) and per-image post-processing. The heads import from here and never
from each other."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from scalekit.boxes import encode_boxes, match_rois, near_ignore, out_of_range
from scalekit.ops import DeformPSRoIPoolPack, ps_roi_align

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
            raise ValueError(f"targets[{i}]: labels must lie in [1, {num_classes}] (0 is background)")
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
    offset branch instead of :func:`~scalekit.ops.ps_roi_align`."""

    def __init__(self, channels: int, pool_size: int, spatial_scale: float, sampling_ratio: int,
                 deformable: bool = False) -> None:
        super().__init__()
        self.pool_size, self.spatial_scale, self.sampling_ratio = pool_size, spatial_scale, sampling_ratio
        self.pool = (DeformPSRoIPoolPack(channels, pool_size, spatial_scale, sample_per_part=sampling_ratio)
                     if deformable else None)

    def forward(self, maps: Tensor, rois: Tensor) -> Tensor:
        if self.pool is not None:
            return self.pool(maps, rois).mean((2, 3))
        return ps_roi_align(maps, rois, self.pool_size, self.spatial_scale, self.sampling_ratio).mean((2, 3))


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
        if p.dim() != 2 or p.shape[1] != 4:
            raise ValueError(f"proposals[{i}] must be [L, 4] boxes (x1, y1, x2, y2), got {list(p.shape)}")
    idx = torch.cat([torch.full((p.shape[0],), i, dtype=torch.int64, device=p.device) for i, p in enumerate(proposals)])
    boxes = torch.cat(list(proposals))
    return torch.cat([idx[:, None].to(boxes.dtype), boxes], 1), idx
