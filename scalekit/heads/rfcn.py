"""R-FCN's position-sensitive detection head (Dai, Li, He and Sun, NeurIPS
2016), the detector of SNIP and SNIPER (thesis §2.7.1, §3.4)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from scalekit.heads._common import (
    PSVote,
    RoIHead,
    check_int,
    check_real,
    classification_losses,
    detections,
)
from scalekit.ops import batched_nms

__all__ = ["RFCNHead"]


class RFCNHead(RoIHead):
    """R-FCN head: position-sensitive class scores and class-agnostic boxes for any proposals.

    On the backbone's feature map: a 1x1 conv to ``mid_channels`` and ReLU,
    then ``(C + 1) * k * k`` position-sensitive score maps and ``4 * k * k``
    box maps (1x1 convs). Each RoI is pooled into ``k x k`` bins, each bin from
    its own maps (:func:`~scalekit.ops.ps_roi_align`, or deformable
    PSRoI pooling with ``deformable=True``), and the bins vote by averaging.

    Labels follow torchvision: classes ``1..C``, 0 is background. Targets are
    torchvision's dicts plus ``"ignore_boxes"``: a RoI whose best match is an
    ignore box (IoU at least the foreground threshold) is neither foreground
    nor background and leaves the losses. The contract (``forward`` returns
    ``{"rois", "det_logits", "box_deltas"}``, ``loss(outputs, targets)``,
    ``postprocess(outputs, image_sizes)``) is the one of every head in
    :mod:`scalekit.heads`; :class:`~scalekit.detection.TorchvisionRoIHeads`
    plugs it into a torchvision ``FasterRCNN``.

    Args:
        in_channels: channels of the feature map.
        num_classes: ``C``, without background.
        pool_size: ``k`` (7 in R-FCN).
        spatial_scale: feature-map size / image size (1/16 for a ResNet conv5 with dilation, R-FCN's);
            ``None``: inferred from the map and ``image_sizes`` at each call. A given value is checked
            against the map whenever ``forward`` gets ``image_sizes``.
        sampling_ratio: PSRoIAlign samples per bin side, ``<= 0`` adaptive (or deformable samples per part).
        mid_channels: width of the 1x1 conv before the score maps (1024 in R-FCN).
        deformable: deformable PSRoI pooling with a learned offset branch (Deformable R-FCN).

    Example:
        >>> import torch
        >>> from scalekit.heads import RFCNHead
        >>> head = RFCNHead(in_channels=64, num_classes=3, pool_size=3, spatial_scale=1 / 8, mid_channels=32)
        >>> features = torch.randn(2, 64, 20, 20)
        >>> proposals = [torch.tensor([[8.0, 8, 80, 100], [0, 0, 40, 40]]), torch.tensor([[16.0, 16, 128, 128]])]
        >>> out = head(features, proposals, image_sizes=[(160, 160), (160, 160)])
        >>> out["rois"].shape, out["det_logits"].shape, out["box_deltas"].shape
        (torch.Size([3, 5]), torch.Size([3, 4]), torch.Size([3, 4]))
        >>> targets = [{"boxes": torch.tensor([[10.0, 10, 80, 100]]), "labels": torch.tensor([2])},
        ...            {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
        >>> sorted(head.loss(out, targets))
        ['loss_box', 'loss_cls']
        >>> dets = head.postprocess(out, image_sizes=[(160, 160), (160, 160)])
        >>> sorted(dets[0])
        ['boxes', 'labels', 'scores']
    """

    def __init__(self, in_channels: int, num_classes: int, pool_size: int = 7, spatial_scale: float | None = 1 / 16,
                 sampling_ratio: int = 2, mid_channels: int = 1024, deformable: bool = False) -> None:
        super().__init__()
        in_channels = check_int(in_channels, "in_channels", 1)
        self.num_classes = num_classes = check_int(num_classes, "num_classes", 1)
        self.pool_size = pool_size = check_int(pool_size, "pool_size", 1)
        self.spatial_scale = None if spatial_scale is None else check_real(spatial_scale, "spatial_scale", 0,
                                                                           strict=True)
        self.sampling_ratio = sampling_ratio = check_int(sampling_ratio, "sampling_ratio", -(2 ** 31))
        mid_channels = check_int(mid_channels, "mid_channels", 1)
        k2 = pool_size * pool_size
        self.reduce = nn.Sequential(nn.Conv2d(in_channels, mid_channels, 1), nn.ReLU(inplace=True))
        self.cls_maps = nn.Conv2d(mid_channels, (num_classes + 1) * k2, 1)
        self.box_maps = nn.Conv2d(mid_channels, 4 * k2, 1)
        nn.init.normal_(self.cls_maps.weight, std=0.01)
        nn.init.normal_(self.box_maps.weight, std=0.001)
        nn.init.zeros_(self.cls_maps.bias)
        nn.init.zeros_(self.box_maps.bias)
        self.cls_vote = PSVote(num_classes + 1, pool_size, sampling_ratio, bool(deformable))
        self.box_vote = PSVote(4, pool_size, sampling_ratio, bool(deformable))

    def forward(self, features: Tensor, proposals: list[Tensor], image_sizes=None) -> dict:
        """``features`` ``[N, in_channels, H, W]``, ``proposals`` N tensors ``[L, 4]``, ``image_sizes``
        ``(height, width)`` per image (optional; checks or infers the spatial scale) -> dict with
        ``rois [R, 5]`` (batch index first, the RoIs ``loss`` and ``postprocess`` reuse),
        ``det_logits [R, C + 1]`` (background first) and ``box_deltas [R, 4]``; ``R`` all proposals."""
        rois, scale = self.rois(features, proposals, image_sizes)
        x = self.reduce(features)
        return {"rois": rois, "det_logits": self.cls_vote(self.cls_maps(x), rois, scale),
                "box_deltas": self.box_vote(self.box_maps(x), rois, scale)}

    def class_scores(self, outputs: dict) -> Tensor:
        """``[R, C]``: the softmax over background and the ``C`` classes, without the background."""
        return outputs["det_logits"].softmax(1)[:, 1:]

    def loss(self, outputs: dict, targets: list[dict], *, ohem: int | None = None,
             iou_threshold: float = 0.5, beta: float = 1.0) -> dict:
        """Fast R-CNN losses of ``outputs`` (from :meth:`forward`): softmax over ``C + 1``
        and smooth-L1 on foreground RoIs.

        A RoI is foreground when its IoU with a ground truth is ``>= iou_threshold``
        (0.5). ``ohem``: keep only the ``ohem`` RoIs of highest loss per image (R-FCN
        uses 128); both losses are averaged over the kept RoIs. RoIs matched to
        an ``"ignore_boxes"`` entry take part in neither loss. ``targets``: one
        dict per image of the forward pass.
        """
        labels, box_targets, index = self.targets_for(outputs, targets, inclusive=True, iou_threshold=iou_threshold)
        cls, box, _ = classification_losses(outputs["det_logits"], labels, outputs["box_deltas"], box_targets,
                                            index, ohem, beta)
        return {"loss_cls": cls, "loss_box": box}

    @torch.no_grad()
    def postprocess(self, outputs: dict, image_sizes, *, score_threshold: float = 0.05,
                    nms_threshold: float = 0.3, detections_per_image: int = 100) -> list[dict]:
        """Boxes, scores and labels per image: softmax scores, decoded boxes
        (clipped to ``image_sizes``, ``(height, width)`` per image), per-class NMS
        (R-FCN: 0.3), the best ``detections_per_image``; one dict per image of
        ``image_sizes``."""
        boxes, index = self.boxes(outputs, image_sizes)
        return detections(boxes, self.class_scores(outputs), index, len(image_sizes),
                          lambda b, s, lab: batched_nms(b, s, lab, nms_threshold), score_threshold, detections_per_image)
