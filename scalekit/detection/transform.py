"""Inputs that reach the backbone at the size they are given (chips, pyramid
levels) and ignore boxes resized with the boxes (thesis §2.6, §3.3)."""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from scalekit.detection._patch import mix_in

__all__ = ["keep_input_size", "input_size_kept"]


class _ScaleAwareTransform:
    """torchvision's transform, plus: ``resize_inputs = False`` leaves every
    image at its size (it is still normalised and padded to a multiple of
    ``size_divisible``), and ``target["ignore_boxes"]`` is resized exactly as
    ``target["boxes"]``."""

    resize_inputs: bool = True

    def resize(self, image: Tensor, target=None):
        if not self.resize_inputs:
            return image, target
        h, w = image.shape[-2:]
        image, target = super().resize(image, target)
        if target is not None and "ignore_boxes" in target:
            nh, nw = image.shape[-2:]
            ratio = torch.tensor([nw / w, nh / h, nw / w, nh / h], dtype=torch.float32)
            ignore = target["ignore_boxes"]
            target["ignore_boxes"] = ignore * ratio.to(ignore.device, ignore.dtype)
        return image, target


def has_rcnn_transform(model) -> bool:
    """Whether ``model`` resizes through a torchvision ``GeneralizedRCNNTransform``: every
    ``GeneralizedRCNN`` (Faster/Mask/Keypoint R-CNN) and RetinaNet, FCOS, SSD and SSDlite."""
    return isinstance(getattr(model, "transform", None), GeneralizedRCNNTransform)


def _transform_of(model) -> GeneralizedRCNNTransform:
    transform = model if isinstance(model, GeneralizedRCNNTransform) else getattr(model, "transform", None)
    if not isinstance(transform, GeneralizedRCNNTransform):
        raise TypeError("model must be a torchvision detector that resizes through a GeneralizedRCNNTransform "
                        "(FasterRCNN, MaskRCNN, RetinaNet, FCOS, SSD, ...) or that transform, "
                        f"got {type(model).__name__}")
    return mix_in(transform, _ScaleAwareTransform)


def keep_input_size(model, keep: bool = True):
    """Stop (or, with ``keep=False``, restart) a torchvision detector resizing its inputs.

    torchvision's ``GeneralizedRCNNTransform`` resizes every image to its
    ``min_size``/``max_size``, in training and inference: a 512x512 chip or a
    pyramid level would reach the backbone at the model's size instead of its
    own. With the size kept, images are only normalised and padded (bottom and
    right) to a multiple of ``size_divisible`` (32), and detections come back
    in the coordinates of the images given. The transform also resizes
    ``target["ignore_boxes"]`` with the boxes whenever it does resize.

    Args:
        model: a torchvision detector with a ``GeneralizedRCNNTransform``
            (``FasterRCNN``, ``MaskRCNN``, ``RetinaNet``, ``FCOS``, ``SSD``) or
            that transform, changed in place.
        keep: ``True`` to keep input sizes, ``False`` for torchvision's resizing.

    Returns:
        ``model``.

    Example:
        >>> import torch, torchvision
        >>> from scalekit.detection import keep_input_size
        >>> model = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(
        ...     weights=None, weights_backbone=None, num_classes=3).eval()
        >>> images, _ = keep_input_size(model).transform([torch.rand(3, 512, 512)])
        >>> images.tensors.shape  # not 320 x 320
        torch.Size([1, 3, 512, 512])
    """
    _transform_of(model).resize_inputs = not keep
    return model


@contextlib.contextmanager
def input_size_kept(model):
    """Context manager: :func:`keep_input_size` inside, the previous setting after."""
    transform = _transform_of(model)
    before = transform.resize_inputs
    transform.resize_inputs = False
    try:
        yield model
    finally:
        transform.resize_inputs = before
