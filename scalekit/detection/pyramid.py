"""torchvision detectors inside :class:`scalekit.scale.Pyramid`: every level's
images reach the backbone at that level's size (thesis §2.6.1, §3.4.4)."""

from __future__ import annotations

import torch
from torch import Tensor

from scalekit.detection.transform import has_rcnn_transform, input_size_kept

__all__ = ["torchvision_level_detector", "torchvision_adapter"]


def torchvision_level_detector(model):
    """A function ``run(images) -> list[dict]`` that runs a torchvision detector
    on one pyramid level's images, as one batch, without resizing them.

    :class:`~scalekit.scale.Pyramid` uses it for every torchvision detector
    that resizes through a ``GeneralizedRCNNTransform`` (Faster/Mask/Keypoint
    R-CNN, RetinaNet, FCOS, SSD, SSDlite); call it yourself to run a model at
    the size you give it. The model must be in eval mode.

    Example:
        >>> import torch, torchvision
        >>> from scalekit.detection import torchvision_level_detector
        >>> model = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(
        ...     weights=None, weights_backbone=None, num_classes=3).eval()
        >>> sizes = []
        >>> hook = model.backbone.register_forward_pre_hook(lambda m, x: sizes.append(tuple(x[0].shape[-2:])))
        >>> _ = torchvision_level_detector(model)([torch.rand(3, 700, 1000)])
        >>> sizes  # 700 x 1000 padded to multiples of 32, not torchvision's 320 x 320
        [(704, 1024)]
    """
    if not has_rcnn_transform(model):
        raise TypeError("model must be a torchvision detector with a GeneralizedRCNNTransform (FasterRCNN, "
                        f"RetinaNet, FCOS, SSD, ...), got {type(model).__name__}")

    def run(images: list[Tensor]) -> list[dict]:
        if model.training:
            raise RuntimeError("the detector is in training mode: call model.eval() before pyramid inference")
        if len(images) == 0:
            return []
        with torch.no_grad(), input_size_kept(model):
            return model(list(images))

    return run


def torchvision_adapter(detector):
    """:func:`torchvision_level_detector` for a torchvision detector it can run, else ``None``.

    :class:`~scalekit.scale.Pyramid` calls this for any detector whose class
    (or a base class) is defined in ``torchvision.models.detection``; nothing
    is registered on import.
    """
    return torchvision_level_detector(detector) if has_rcnn_transform(detector) else None
