"""R-FCN (thesis §2.7.1, §3.4) and R-FCN-3000 (§4.4) heads as the ``roi_heads``
of a torchvision ``FasterRCNN``."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.models.detection.faster_rcnn import FasterRCNN

__all__ = ["TorchvisionRoIHeads", "faster_rcnn_with_head"]


class TorchvisionRoIHeads(nn.Module):
    """A :mod:`scalekit.heads` head behind torchvision's ``roi_heads`` interface.

    ``forward(features, proposals, image_shapes, targets=None)`` returns
    ``(detections, losses)`` as torchvision's ``RoIHeads`` does: in training
    the ground-truth boxes are appended to each image's proposals (as
    torchvision and R-FCN do), every proposal is scored (no fg/bg resampling,
    as SNIPER), and the head's losses come back, with OHEM if ``ohem`` is set;
    in inference the head's post-processing gives ``{"boxes", "scores",
    "labels"}`` per image, in the coordinates of the (transformed) images.
    Targets may carry ``"ignore_boxes"``: RoIs on them take part in no loss.

    Args:
        head: an :class:`~scalekit.heads.RFCNHead` or :class:`~scalekit.heads.DecoupledHead`
            (anything with the same ``forward``/``loss``/``postprocess`` contract).
        feature: key of the backbone's feature map to use (default: the only
            one; a backbone with several, e.g. FPN, must name it). The head's
            ``spatial_scale`` must be that map's size over the image's.
        ohem: hardest RoIs per image for the loss (R-FCN: 128); ``None``: all.
        fg_iou_threshold: foreground IoU of the head's label assignment (0.5).
        score_threshold, nms_threshold, detections_per_image: post-processing;
            ``None`` keeps the head's own defaults.

    Example:
        >>> import torch
        >>> from scalekit.detection import TorchvisionRoIHeads
        >>> from scalekit.heads import RFCNHead
        >>> roi_heads = TorchvisionRoIHeads(RFCNHead(8, num_classes=2, pool_size=3, spatial_scale=1 / 8,
        ...                                          mid_channels=8)).eval()
        >>> dets, losses = roi_heads({"0": torch.randn(1, 8, 16, 16)}, [torch.tensor([[8.0, 8, 64, 64]])],
        ...                          [(128, 128)])
        >>> sorted(dets[0]), losses
        (['boxes', 'labels', 'scores'], {})
    """

    def __init__(self, head: nn.Module, *, feature: str | None = None, ohem: int | None = None,
                 fg_iou_threshold: float = 0.5, score_threshold: float | None = None,
                 nms_threshold: float | None = None, detections_per_image: int | None = None) -> None:
        super().__init__()
        for method in ("loss", "postprocess"):
            if not callable(getattr(head, method, None)):
                raise TypeError(f"head must have a {method}() method (scalekit.heads' contract), "
                                f"got {type(head).__name__}")
        if ohem is not None and ohem < 1:
            raise ValueError(f"ohem must be None or a positive number of RoIs per image, got {ohem}")
        self.head, self.feature, self.ohem, self.fg_iou_threshold = head, feature, ohem, fg_iou_threshold
        self.postprocess_kwargs = {k: v for k, v in (("score_threshold", score_threshold),
                                                     ("nms_threshold", nms_threshold),
                                                     ("detections_per_image", detections_per_image)) if v is not None}

    def _feature_map(self, features) -> Tensor:
        if isinstance(features, Tensor):
            return features
        if self.feature is not None:
            if self.feature not in features:
                raise KeyError(f"feature {self.feature!r} is not among the backbone's maps {list(features)}")
            return features[self.feature]
        if len(features) != 1:
            raise ValueError(f"the backbone gives {len(features)} feature maps {list(features)}: "
                             "pass feature=<key> to choose the one the head pools from")
        return next(iter(features.values()))

    def forward(self, features, proposals: list[Tensor], image_shapes: list[tuple[int, int]], targets=None):
        x = self._feature_map(features)
        if self.training:
            if targets is None:
                raise ValueError("targets must be given in training mode")
            proposals = [torch.cat([p, t["boxes"].to(p)]) for p, t in zip(proposals, targets)]
            outputs = self.head(x, proposals)
            return [], self.head.loss(outputs, proposals, targets, ohem=self.ohem, iou_threshold=self.fg_iou_threshold)
        outputs = self.head(x, proposals)
        return self.head.postprocess(outputs, proposals, image_shapes, **self.postprocess_kwargs), {}


def faster_rcnn_with_head(backbone: nn.Module, head: nn.Module, *, feature: str | None = None,
                          ohem: int | None = None, **kwargs) -> FasterRCNN:
    """A torchvision ``FasterRCNN``: ``backbone`` + torchvision's RPN + ``head`` as its RoI heads.

    ``backbone`` needs ``out_channels`` (as every torchvision detection
    backbone has). ``kwargs`` go to ``FasterRCNN`` (``min_size``,
    ``max_size``, ``rpn_anchor_generator``, ``rpn_post_nms_top_n_train``, ...);
    torchvision's box head is never built. The model trains and infers as any
    torchvision detector: ``model(images, targets)`` gives losses,
    ``model.eval()(images)`` torchvision-format detections in input coordinates.

    Example:
        >>> import torch
        >>> from torchvision.models.detection.anchor_utils import AnchorGenerator
        >>> from scalekit.detection import faster_rcnn_with_head
        >>> from scalekit.heads import DecoupledHead
        >>> backbone = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, stride=8, padding=1), torch.nn.ReLU())
        >>> backbone.out_channels = 16
        >>> head = DecoupledHead(16, num_classes=5, pool_size=3, spatial_scale=1 / 8, mid_channels=16, fine_channels=16)
        >>> model = faster_rcnn_with_head(backbone, head, min_size=128, max_size=128,
        ...                               rpn_anchor_generator=AnchorGenerator(((32, 64),), ((0.5, 1.0, 2.0),)))
        >>> target = {"boxes": torch.tensor([[10.0, 20, 70, 90]]), "labels": torch.tensor([3])}
        >>> sorted(model([torch.rand(3, 128, 128)], [target]))
        ['loss_box', 'loss_cls', 'loss_det', 'loss_objectness', 'loss_rpn_box_reg']
        >>> sorted(model.eval()([torch.rand(3, 128, 128)])[0])
        ['boxes', 'labels', 'scores']
    """
    if not hasattr(backbone, "out_channels"):
        raise ValueError("backbone must have an out_channels attribute (the channels of its feature map)")
    for key in ("num_classes", "box_roi_pool", "box_head", "box_predictor"):
        if key in kwargs:
            raise TypeError(f"faster_rcnn_with_head() got {key!r}: the head replaces torchvision's box head")
    if "rpn_anchor_generator" not in kwargs and not hasattr(backbone, "fpn"):
        # one feature map: torchvision's default generator has five levels (FPN's)
        from torchvision.models.detection.anchor_utils import AnchorGenerator

        kwargs["rpn_anchor_generator"] = AnchorGenerator(((32, 64, 128, 256, 512),), ((0.5, 1.0, 2.0),))
    from torchvision.ops import MultiScaleRoIAlign

    # placeholders, replaced at once: torchvision's constructor insists on a box head
    model = FasterRCNN(backbone, num_classes=None, box_roi_pool=MultiScaleRoIAlign(["0"], 1, 1),
                       box_head=nn.Identity(), box_predictor=nn.Identity(), **kwargs)
    model.roi_heads = TorchvisionRoIHeads(head, feature=feature, ohem=ohem)
    return model

