"""R-FCN's position-sensitive detection head (Dai, Li, He and Sun, NeurIPS
2016), the detector of SNIP and SNIPER (thesis §2.7.1, §3.4)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from scalekit.heads._targets import (
    BOX_WEIGHTS,
    clip_to_images,
    decode_boxes,
    encode_boxes,
    hard_examples,
    match_rois,
    rois_with_index,
    smooth_l1,
)
from scalekit.ops import DeformPSRoIPool, batched_nms, ps_roi_align

__all__ = ["RFCNHead"]


def check_targets(targets, num_images: int, num_classes: int) -> None:
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


def assign(proposals, targets, inclusive: bool, iou_threshold: float = 0.5):
    """Per-RoI class label (0 = background) and box regression target."""
    labels, box_targets = [], []
    for p, t in zip(proposals, targets):
        m = match_rois(p, t["boxes"], iou_threshold, inclusive=inclusive)
        labels.append(torch.where(m >= 0, t["labels"][m.clamp(min=0)] if t["labels"].numel() else m, 0))
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
    ``deformable=True`` pools with :class:`~scalekit.ops.DeformPSRoIPool` (its own
    offset branch) instead of :func:`~scalekit.ops.ps_roi_align`."""

    def __init__(self, channels: int, pool_size: int, spatial_scale: float, sampling_ratio: int,
                 deformable: bool = False) -> None:
        super().__init__()
        self.pool_size, self.spatial_scale, self.sampling_ratio = pool_size, spatial_scale, sampling_ratio
        self.pool = (DeformPSRoIPool(channels, pool_size, spatial_scale, sample_per_part=sampling_ratio)
                     if deformable else None)

    def forward(self, maps: Tensor, rois: Tensor) -> Tensor:
        if self.pool is not None:
            return self.pool(maps, rois).mean((2, 3))
        return ps_roi_align(maps, rois, self.pool_size, self.spatial_scale, self.sampling_ratio).mean((2, 3))


class RFCNHead(nn.Module):
    """R-FCN head: position-sensitive class scores and class-agnostic boxes for any proposals.

    On the backbone's feature map: a 1x1 conv to ``mid_channels`` and ReLU,
    then ``(C + 1) * k * k`` position-sensitive score maps and ``4 * k * k``
    box maps (1x1 convs). Each RoI is pooled into ``k x k`` bins, each bin from
    its own maps (:func:`~scalekit.ops.ps_roi_align`, or deformable
    PSRoI pooling with ``deformable=True``), and the bins vote by averaging.

    Labels follow torchvision: classes ``1..C``, 0 is background.

    Args:
        in_channels: channels of the feature map.
        num_classes: ``C``, without background.
        pool_size: ``k`` (7 in R-FCN).
        spatial_scale: feature-map size / image size (1/16 for a ResNet conv5 with dilation).
        sampling_ratio: PSRoIAlign samples per bin side (or deformable samples per part).
        mid_channels: width of the 1x1 conv before the score maps (1024 in R-FCN).
        deformable: deformable PSRoI pooling with a learned offset branch (Deformable R-FCN).

    Example:
        >>> import torch
        >>> from scalekit.heads import RFCNHead
        >>> head = RFCNHead(in_channels=64, num_classes=3, pool_size=3, spatial_scale=1 / 8, mid_channels=32)
        >>> features = torch.randn(2, 64, 20, 20)
        >>> proposals = [torch.tensor([[8.0, 8, 80, 100], [0, 0, 40, 40]]), torch.tensor([[16.0, 16, 128, 128]])]
        >>> cls_logits, box_deltas = head(features, proposals)
        >>> cls_logits.shape, box_deltas.shape
        (torch.Size([3, 4]), torch.Size([3, 4]))
        >>> targets = [{"boxes": torch.tensor([[10.0, 10, 80, 100]]), "labels": torch.tensor([2])},
        ...            {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
        >>> sorted(head.loss(cls_logits, box_deltas, proposals, targets))
        ['loss_box', 'loss_cls']
        >>> dets = head.postprocess(cls_logits, box_deltas, proposals, image_sizes=[(160, 160), (160, 160)])
        >>> sorted(dets[0])
        ['boxes', 'labels', 'scores']
    """

    def __init__(self, in_channels: int, num_classes: int, pool_size: int = 7, spatial_scale: float = 1 / 16,
                 sampling_ratio: int = 2, mid_channels: int = 1024, deformable: bool = False) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes, self.pool_size = num_classes, pool_size
        self.spatial_scale, self.sampling_ratio = spatial_scale, sampling_ratio
        k2 = pool_size * pool_size
        self.reduce = nn.Sequential(nn.Conv2d(in_channels, mid_channels, 1), nn.ReLU(inplace=True))
        self.cls_maps = nn.Conv2d(mid_channels, (num_classes + 1) * k2, 1)
        self.box_maps = nn.Conv2d(mid_channels, 4 * k2, 1)
        nn.init.normal_(self.cls_maps.weight, std=0.01)
        nn.init.normal_(self.box_maps.weight, std=0.001)
        nn.init.zeros_(self.cls_maps.bias)
        nn.init.zeros_(self.box_maps.bias)
        self.cls_vote = PSVote(num_classes + 1, pool_size, spatial_scale, sampling_ratio, deformable)
        self.box_vote = PSVote(4, pool_size, spatial_scale, sampling_ratio, deformable)

    def forward(self, features: Tensor, proposals: list[Tensor]) -> tuple[Tensor, Tensor]:
        """``features`` ``[N, in_channels, H, W]``, ``proposals`` N tensors ``[L, 4]`` ->
        ``(cls_logits [R, C + 1], box_deltas [R, 4])`` with ``R`` all proposals."""
        x = self.reduce(features)
        rois, _ = rois_with_index(proposals)
        return self.cls_vote(self.cls_maps(x), rois), self.box_vote(self.box_maps(x), rois)

    def loss(self, cls_logits: Tensor, box_deltas: Tensor, proposals: list[Tensor], targets: list[dict],
             *, ohem: int | None = None, iou_threshold: float = 0.5, beta: float = 1.0) -> dict:
        """Fast R-CNN losses: softmax over ``C + 1`` and smooth-L1 on foreground RoIs.

        A RoI is foreground when its IoU with a ground truth is ``>= iou_threshold``
        (0.5). ``ohem``: keep only the ``ohem`` RoIs of highest loss per image (R-FCN
        uses 128); both losses are averaged over the kept RoIs.
        """
        check_targets(targets, len(proposals), self.num_classes)
        labels, box_targets = assign(proposals, targets, inclusive=True, iou_threshold=iou_threshold)
        cls = F.cross_entropy(cls_logits, labels, reduction="none")
        box = smooth_l1(box_deltas, box_targets, beta) * (labels > 0)
        keep = hard_examples(cls + box, rois_with_index(proposals)[1], ohem)
        n = keep.sum().clamp(min=1)
        return {"loss_cls": cls[keep].sum() / n, "loss_box": box[keep].sum() / n}

    @torch.no_grad()
    def postprocess(self, cls_logits: Tensor, box_deltas: Tensor, proposals: list[Tensor], image_sizes=None, *,
                    score_threshold: float = 0.05, nms_threshold: float = 0.3,
                    detections_per_image: int = 100) -> list[dict]:
        """Boxes, scores and labels per image: softmax scores, decoded boxes
        (clipped to ``image_sizes``, ``(height, width)`` per image), per-class NMS
        (R-FCN: 0.3), the best ``detections_per_image``."""
        rois, index = rois_with_index(proposals)
        boxes = clip_to_images(decode_boxes(rois[:, 1:], box_deltas, BOX_WEIGHTS), index, image_sizes)
        scores = cls_logits.softmax(1)[:, 1:]
        return detections(boxes, scores, index, len(proposals),
                          lambda b, s, lab: batched_nms(b, s, lab, nms_threshold), score_threshold, detections_per_image)
