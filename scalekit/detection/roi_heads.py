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
            ``spatial_scale`` is checked against that map's size over the
            images' at every call (``None``: inferred).
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
        for method in ("loss", "postprocess", "postprocess_objectness"):
            if not callable(getattr(head, method, None)):
                raise TypeError(f"head must have a {method}() method (scalekit.heads' contract), "
                                f"got {type(head).__name__}")
        if ohem is not None and ohem < 1:
            raise ValueError(f"ohem must be None or a positive number of RoIs per image, got {ohem}")
        self.head, self.feature, self.ohem, self.fg_iou_threshold = head, feature, ohem, fg_iou_threshold
        self.postprocess_kwargs = {k: v for k, v in (("score_threshold", score_threshold),
                                                     ("nms_threshold", nms_threshold),
                                                     ("detections_per_image", detections_per_image)) if v is not None}

    def feature_map(self, features) -> Tensor:
        """The map the head pools from: ``features`` itself, or its entry ``feature``."""
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
        x = self.feature_map(features)
        if self.training:
            if targets is None:
                raise ValueError("targets must be given in training mode")
            proposals = [torch.cat([p, t["boxes"].to(p)]) for p, t in zip(proposals, targets)]
            outputs = self.head(x, proposals, image_shapes)
            return [], self.head.loss(outputs, targets, ohem=self.ohem, iou_threshold=self.fg_iou_threshold)
        outputs = self.head(x, proposals, image_shapes)
        return self.head.postprocess(outputs, image_shapes, **self.postprocess_kwargs), {}

    @torch.no_grad()
    def objectness_detections(self, features, proposals: list[Tensor], image_shapes: list[tuple[int, int]],
                              **kwargs) -> list[dict]:
        """Class-agnostic detections (``1 - p(background)``, label 1) in the coordinates of the
        transformed images: the head's ``postprocess_objectness``; ``kwargs`` go to it
        (default: this module's ``nms_threshold`` and ``detections_per_image``, score threshold 0)."""
        outputs = self.head(self.feature_map(features), proposals, image_shapes)
        defaults = {k: v for k, v in self.postprocess_kwargs.items() if k != "score_threshold"}
        return self.head.postprocess_objectness(outputs, image_shapes, **{**defaults, **kwargs})


# torchvision's default anchors: one size per map for a ResNet FPN's five maps, all sizes on every map
# otherwise (its MobileNetV3 FPN's three maps; one map)
ANCHOR_SIZES = (32, 64, 128, 256, 512)
ASPECT_RATIOS = (0.5, 1.0, 2.0)


def default_anchor_generator(num_maps: int):
    """torchvision's anchors for a backbone with ``num_maps`` feature maps: sizes 32..512
    (one per map when there are five, as ``fasterrcnn_resnet50_fpn``; all on every map
    otherwise, as ``fasterrcnn_mobilenet_v3_large_fpn``), aspect ratios 0.5, 1, 2."""
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    sizes = tuple((s,) for s in ANCHOR_SIZES) if num_maps == len(ANCHOR_SIZES) else (ANCHOR_SIZES,) * num_maps
    return AnchorGenerator(sizes, (ASPECT_RATIOS,) * num_maps)


@torch.no_grad()
def _probe(backbone: nn.Module, side: int = 128) -> dict:
    """The backbone's feature maps for one ``side`` x ``side`` image (eval mode, then restored)."""
    param = next(iter(backbone.parameters()), None)
    device, dtype = (param.device, param.dtype) if param is not None else (torch.device("cpu"), torch.float32)
    was_training = backbone.training
    backbone.eval()
    try:
        out = backbone(torch.zeros(1, 3, side, side, device=device, dtype=dtype))
    finally:
        backbone.train(was_training)
    return {"0": out} if isinstance(out, Tensor) else dict(out)


def faster_rcnn_with_head(backbone: nn.Module, head: nn.Module, *, feature: str | None = None,
                          ohem: int | None = None, **kwargs) -> FasterRCNN:
    """A torchvision ``FasterRCNN``: ``backbone`` + torchvision's RPN + ``head`` as its RoI heads.

    ``backbone`` needs ``out_channels`` (as every torchvision detection
    backbone has). ``kwargs`` go to ``FasterRCNN`` (``min_size``,
    ``max_size``, ``rpn_anchor_generator``, ``rpn_post_nms_top_n_train``, ...);
    torchvision's box head is never built. The model trains and infers as any
    torchvision detector: ``model(images, targets)`` gives losses,
    ``model.eval()(images)`` torchvision-format detections in input coordinates.

    The backbone runs once on a 128x128 image here to count its feature maps:
    without ``rpn_anchor_generator`` the anchors are torchvision's for that many
    maps (:func:`default_anchor_generator`); a given one must have one entry per
    map. A backbone with several maps (FPN) needs ``feature`` (the map the head
    pools from), and the head's ``spatial_scale`` is checked against that map.

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
    roi_heads = TorchvisionRoIHeads(head, feature=feature, ohem=ohem)
    maps = _probe(backbone)
    if len(maps) > 1 and feature is None:
        raise ValueError(f"the backbone gives {len(maps)} feature maps {list(maps)}: pass feature=<key> to choose "
                         f"the one the head pools from (e.g. feature={next(iter(maps))!r}, the finest)")
    generator = kwargs.get("rpn_anchor_generator")
    if generator is None:
        kwargs["rpn_anchor_generator"] = default_anchor_generator(len(maps))
    elif hasattr(generator, "sizes") and len(generator.sizes) != len(maps):
        raise ValueError(
            f"rpn_anchor_generator has {len(generator.sizes)} entries of sizes, but the backbone gives "
            f"{len(maps)} feature maps {list(maps)}: pass one entry per map, e.g. AnchorGenerator("
            f"sizes={((32,), (64,), (128,), (256,), (512,))[:len(maps)] if len(maps) <= 5 else ((32,),) * len(maps)}, "
            f"aspect_ratios={((0.5, 1.0, 2.0),) * len(maps)}), or leave it out for torchvision's default")
    x = roi_heads.feature_map(maps)
    head_param = next(iter(head.parameters()), None)
    if head_param is None or head_param.device == x.device:
        was_training = head.training
        head.eval()
        try:  # one RoI through the head: its spatial scale and channels are checked now, not at step 1
            with torch.no_grad():
                head(x, [x.new_tensor([[0.0, 0.0, 32.0, 32.0]])], [(128, 128)])
        finally:
            head.train(was_training)
    from torchvision.ops import MultiScaleRoIAlign

    # placeholders, replaced at once: torchvision's constructor insists on a box head
    model = FasterRCNN(backbone, num_classes=None, box_roi_pool=MultiScaleRoIAlign(["0"], 1, 1),
                       box_head=nn.Identity(), box_predictor=nn.Identity(), **kwargs)
    model.roi_heads = roi_heads
    return model
