"""AutoFocus's focus branch inside a torchvision detector (Najibi, Singh and
Davis, ICCV 2019, §4.1): trained with the detector, its loss beside the
detector's, and its focus maps returned with the detections for
:class:`scalekit.autofocus.AutoFocus`."""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN

from scalekit._args import integer, real
from scalekit.autofocus import FocusHead, focus_labels, focus_loss, focus_probability
from scalekit.detection.transform import _transform_of, input_size_kept

__all__ = ["FocusDetector", "focus_adapter"]


class FocusDetector(nn.Module):
    """A torchvision ``FasterRCNN``-style detector with AutoFocus's focus head on one of its feature maps.

    The same forward as the detector's own — its transform, backbone, RPN
    and RoI heads — plus a :class:`~scalekit.autofocus.FocusHead` on the
    backbone's feature map at ``stride`` (16, the paper's conv4):

    * training, ``model(images, targets)`` returns the detector's loss dict
      plus ``"loss_focus"`` (:func:`~scalekit.autofocus.focus_loss`, times
      ``focus_loss_weight``), against :func:`~scalekit.autofocus.focus_labels`
      of each image's ``boxes`` and ``ignore_boxes`` together (every object
      counts by its size: SNIPER's chips hold out-of-range objects as ignore
      boxes, and the small ones are exactly the FocusPixels). The thresholds
      scale with the size each image reaches the backbone at (1 for 512-px
      chips). Cells of the padding are negatives, as in the released code;
    * inference returns the detector's detections, each dict with
      ``"focus"``: the ``[ceil(h / stride), ceil(w / stride)]`` probability of
      focus for the image as it reached the backbone (``h x w``: its own size
      under :func:`~scalekit.detection.keep_input_size`, which
      :class:`~scalekit.autofocus.AutoFocus` applies itself).

    The detector is shared, not copied: its state-dict keys gain the prefix
    ``model.``, the head's are ``focus_head.*``. Its transform also resizes
    ``ignore_boxes`` with the boxes (as :func:`~scalekit.detection.keep_input_size`'s does).

    Args:
        model: a torchvision ``GeneralizedRCNN`` (Faster/Mask R-CNN, any backbone)
            whose backbone has ``out_channels``.
        feature: the key of the feature map the head reads (``"0"`` for a
            backbone returning one tensor); ``None``: the first map at ``stride``.
        stride: the feature map's stride, checked on every forward (16).
        mid_channels: the head's hidden channels (256).
        focus_loss_weight: the loss's weight (1, as the released code).

    Example:
        >>> import torch
        >>> from torchvision.models.detection import FasterRCNN
        >>> from torchvision.models.detection.anchor_utils import AnchorGenerator
        >>> from scalekit.detection import FocusDetector
        >>> backbone = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=16, padding=1), torch.nn.ReLU())
        >>> backbone.out_channels = 8
        >>> detector = FasterRCNN(backbone, num_classes=3, min_size=256, max_size=256,
        ...                       rpn_anchor_generator=AnchorGenerator(((32, 64),), ((1.0,),)))
        >>> model = FocusDetector(detector, mid_channels=16)
        >>> target = {"boxes": torch.tensor([[10.0, 10, 40, 40]]), "labels": torch.tensor([1])}
        >>> sorted(model([torch.rand(3, 256, 256)], [target]))
        ['loss_box_reg', 'loss_classifier', 'loss_focus', 'loss_objectness', 'loss_rpn_box_reg']
        >>> model.eval()(torch.rand(1, 3, 256, 256))[0]["focus"].shape  # one cell per 16 x 16 pixels
        torch.Size([16, 16])
    """

    def __init__(self, model: GeneralizedRCNN, *, feature: str | None = None, stride: int = 16,
                 mid_channels: int = 256, focus_loss_weight: float = 1.0) -> None:
        super().__init__()
        if not isinstance(model, GeneralizedRCNN) or not hasattr(model, "rpn") or not hasattr(model, "roi_heads"):
            raise TypeError("model must be a torchvision FasterRCNN-style GeneralizedRCNN (transform, backbone, rpn, "
                            f"roi_heads), got {type(model).__name__}")
        channels = getattr(model.backbone, "out_channels", None)
        if not isinstance(channels, int):
            raise TypeError("model.backbone must have an int out_channels (torchvision's convention), got "
                            f"{channels!r}")
        if feature is not None and not isinstance(feature, str):
            raise TypeError(f"feature must be a feature map's key (a str) or None, got {type(feature).__name__}")
        _transform_of(model)  # ignore_boxes resized with the boxes
        self.model = model
        self.feature = feature
        self.stride = integer("stride", stride, minimum=1)
        self.focus_loss_weight = real("focus_loss_weight", focus_loss_weight, minimum=0.0)
        self.focus_head = FocusHead(channels, mid_channels)

    def _feature_map(self, features: OrderedDict, padded: tuple[int, int]) -> Tensor:
        expected = (math.ceil(padded[0] / self.stride), math.ceil(padded[1] / self.stride))
        if self.feature is not None:
            if self.feature not in features:
                raise ValueError(f"feature {self.feature!r} is not among the backbone's feature maps "
                                 f"{list(features)}")
            fmap = features[self.feature]
            if tuple(fmap.shape[-2:]) != expected:
                raise ValueError(f"feature map {self.feature!r} is {tuple(fmap.shape[-2:])} for a {padded} input, not "
                                 f"stride {self.stride} ({expected}); give the stride it has or another feature")
            return fmap
        for fmap in features.values():
            if tuple(fmap.shape[-2:]) == expected:
                return fmap
        raise ValueError(f"no feature map at stride {self.stride} for a {padded} input (expected {expected}, the "
                         f"backbone gives {[tuple(f.shape[-2:]) for f in features.values()]}); set stride or feature")

    def _labels(self, targets: list[dict], image_sizes, grid: tuple[int, int], device) -> Tensor:
        out = []
        for i, (target, (h, w)) in enumerate(zip(targets, image_sizes)):
            boxes = target["boxes"]
            ignore = target.get("ignore_boxes")
            if ignore is not None:
                if not isinstance(ignore, Tensor) or ignore.dim() != 2 or ignore.shape[1] != 4:
                    shape = list(ignore.shape) if isinstance(ignore, Tensor) else type(ignore).__name__
                    raise ValueError(f"targets[{i}]['ignore_boxes'] must be an [I, 4] tensor, got {shape}")
                boxes = torch.cat([boxes, ignore.to(boxes)])
            labels = focus_labels(boxes.to(device), (h, w), stride=self.stride)
            out.append(F.pad(labels, (0, grid[1] - labels.shape[1], 0, grid[0] - labels.shape[0])))
        return torch.stack(out)

    def forward(self, images, targets: list[dict] | None = None):
        core = self.model
        if self.training and targets is None:
            raise ValueError("targets must be given in training mode")
        images = list(images)
        if targets is not None:
            targets = list(targets)
            if len(targets) != len(images):
                raise ValueError(f"targets must hold one dict per image ({len(images)}), got {len(targets)}")
            for i, t in enumerate(targets):
                boxes = t.get("boxes") if isinstance(t, dict) else None
                if not isinstance(boxes, Tensor) or boxes.dim() != 2 or boxes.shape[1] != 4 \
                        or not boxes.is_floating_point():
                    got = (f"{boxes.dtype} {list(boxes.shape)}" if isinstance(boxes, Tensor)
                           else type(boxes if isinstance(t, dict) else t).__name__)
                    raise ValueError(f"targets[{i}]['boxes'] must be a float [N, 4] tensor, got {got}")
        original_sizes = [tuple(im.shape[-2:]) for im in images]
        batch, targets = core.transform(images, targets)
        features = core.backbone(batch.tensors)
        if isinstance(features, Tensor):
            features = OrderedDict([("0", features)])
        fmap = self._feature_map(features, tuple(batch.tensors.shape[-2:]))
        logits = self.focus_head(fmap)
        proposals, proposal_losses = core.rpn(batch, features, targets)
        detections, detector_losses = core.roi_heads(features, proposals, batch.image_sizes, targets)
        if self.training:
            labels = self._labels(targets, batch.image_sizes, tuple(logits.shape[-2:]), logits.device)
            return {**detector_losses, **proposal_losses,
                    "loss_focus": self.focus_loss_weight * focus_loss(logits, labels)}
        detections = core.transform.postprocess(detections, batch.image_sizes, original_sizes)
        probability = focus_probability(logits)
        for i, (d, (h, w)) in enumerate(zip(detections, batch.image_sizes)):
            d["focus"] = probability[i, : math.ceil(h / self.stride), : math.ceil(w / self.stride)]
        return detections


def focus_adapter(detector):
    """For :class:`~scalekit.autofocus.AutoFocus`: a function ``run(images) -> list[dict]`` that runs a
    :class:`FocusDetector` on a list of crops at their own size, without gradients; ``None`` for other detectors."""
    if not isinstance(detector, FocusDetector):
        return None

    def run(images: list[Tensor]) -> list[dict]:
        if detector.training:
            raise RuntimeError("the detector is in training mode: call model.eval() before AutoFocus inference")
        if len(images) == 0:
            return []
        device = next(detector.parameters()).device
        with torch.no_grad(), input_size_kept(detector.model):
            return detector([im.to(device) for im in images])

    run.stride = detector.stride  # AutoFocus checks it against its own
    return run
