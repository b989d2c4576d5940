"""SNIPER's negative-chip mining (thesis §3.3.3): a short RPN-only training run,
then the RPN's proposals over the training set at every level — the
``proposals`` that :class:`~scalekit.chips.ChipDataset` and
:meth:`~scalekit.chips.ChipGenerator.negative_chips` take."""

from __future__ import annotations

import contextlib
import sys
from collections import OrderedDict

import torch
from torch import Tensor, nn
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN

from scalekit.detection.transform import input_size_kept
from scalekit.scale.pyramid import resize_image

__all__ = ["RPNOnly", "mine_proposals"]


def _core(model) -> GeneralizedRCNN:
    """The detector inside ``model``: itself, a DDP/DataParallel's ``module``, or an :class:`RPNOnly`'s ``model``."""
    while isinstance(model, (RPNOnly, nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = model.model if isinstance(model, RPNOnly) else model.module
    if not isinstance(model, GeneralizedRCNN) or not hasattr(model, "rpn"):
        raise TypeError(f"model must be a torchvision FasterRCNN-style GeneralizedRCNN, got {type(model).__name__}")
    return model


def _features(core: GeneralizedRCNN, images) -> dict:
    """The backbone's feature maps as the RPN takes them (a single map named "0", as GeneralizedRCNN does)."""
    features = core.backbone(images.tensors)
    return OrderedDict([("0", features)]) if isinstance(features, Tensor) else features


class RPNOnly(nn.Module):
    """A detector's region proposal network trained alone: its transform,
    backbone and RPN, returning the RPN's losses (SNIPER's proposal run, thesis
    §3.3.3: "we train a lightweight RPN network with a very short schedule";
    §3.4.1: training on positive chips alone is enough for proposals).

    A module of its own so that ``DistributedDataParallel`` can wrap it (give
    DDP ``find_unused_parameters=True``: the RoI heads take no part). The
    detector's parameters are shared, not copied.

    Args:
        model: a torchvision ``FasterRCNN``-style detector.

    Example:
        >>> import torch, torchvision
        >>> from scalekit.detection import RPNOnly
        >>> detector = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(
        ...     weights=None, weights_backbone=None, num_classes=3)
        >>> rpn = RPNOnly(detector).train()
        >>> losses = rpn([torch.rand(3, 320, 320)], [{"boxes": torch.tensor([[10.0, 10, 90, 90]]),
        ...                                           "labels": torch.tensor([1])}])
        >>> sorted(losses)
        ['loss_objectness', 'loss_rpn_box_reg']
    """

    def __init__(self, model: GeneralizedRCNN) -> None:
        super().__init__()
        _core(model)
        self.model = model

    def forward(self, images: list[Tensor], targets: list[dict]) -> dict:
        if not self.training:
            raise RuntimeError("RPNOnly computes training losses: call .train() (mine_proposals infers)")
        images, targets = self.model.transform(images, targets)
        _, losses = self.model.rpn(images, _features(self.model, images), targets)
        return losses


@contextlib.contextmanager
def _proposals_kept(rpn, n: int):
    """The RPN keeps ``n`` proposals after NMS in inference inside, its own setting after."""
    before = dict(rpn._post_nms_top_n)
    rpn._post_nms_top_n["testing"] = n
    try:
        yield rpn
    finally:
        rpn._post_nms_top_n.clear()
        rpn._post_nms_top_n.update(before)


@torch.no_grad()
def mine_proposals(model, dataset, levels, *, per_level: int = 300, device=None, progress: bool = False) -> list[Tensor]:
    """The RPN's proposals for every image of ``dataset`` at every level, in original-image pixels.

    Each image is resized by each level's factor (:func:`~scalekit.scale.resize_image`),
    reaches the backbone at that size, and the RPN's ``per_level`` best
    proposals after NMS are mapped back to the image. This is SNIPER's input to
    negative-chip mining (thesis §3.3.3; 300 proposals per scale as the
    released code): ``ChipDataset(dataset, generator, proposals=mine_proposals(...))``.
    The model's training mode, input resizing and proposal count are restored afterwards.

    Args:
        model: a torchvision ``FasterRCNN``-style detector (or an :class:`RPNOnly`
            or a DDP wrapping either); only its transform, backbone and RPN run.
        dataset: ``dataset[i] -> (image [C, H, W], target)``.
        levels: ``(ScaleSpec, AreaRange)`` pairs (e.g. :data:`~scalekit.scale.SNIPER_LEVELS`).
        per_level: proposals kept per image and level.
        device: where the model runs (default: where its parameters are).
        progress: print a progress line to stderr.

    Returns:
        per image, ``[P, 4]`` float32 proposals on the CPU, ``P <= per_level * len(levels)``.

    Example:
        >>> import torch, torchvision
        >>> from scalekit.detection import mine_proposals
        >>> from scalekit.scale import SNIPER_LEVELS
        >>> detector = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(
        ...     weights=None, weights_backbone=None, num_classes=3)
        >>> data = [(torch.rand(3, 120, 160), {})]
        >>> proposals = mine_proposals(detector, data, SNIPER_LEVELS, per_level=20)
        >>> proposals[0].shape[1], len(proposals[0]) <= 60, bool((proposals[0][:, 2:] <= 160.01).all())
        (4, True, True)
    """
    if isinstance(per_level, bool) or not isinstance(per_level, int) or per_level < 1:
        raise ValueError(f"per_level must be a positive int, got {per_level!r}")
    core = _core(model)
    if device is None:
        device = next(core.parameters()).device
    was_training = core.training
    core.eval()
    out = []
    try:
        with input_size_kept(core), _proposals_kept(core.rpn, per_level):
            for i in range(len(dataset)):
                image = dataset[i][0]
                h, w = image.shape[-2:]
                per_image = []
                for spec, _area in levels:
                    resized, fy, fx = resize_image(image, float(spec.factor(h, w)))
                    images, _ = core.transform([resized.to(device)])
                    boxes, _ = core.rpn(images, _features(core, images))
                    scale = torch.tensor([fx, fy, fx, fy], dtype=boxes[0].dtype)
                    per_image.append(boxes[0][:per_level].float().cpu() / scale)
                out.append(torch.cat(per_image) if per_image else torch.zeros(0, 4))
                if progress and (i + 1 == len(dataset) or (i + 1) % 10 == 0):
                    print(f"\rproposals {i + 1}/{len(dataset)}", end="\n" if i + 1 == len(dataset) else "",
                          file=sys.stderr, flush=True)
    finally:
        core.train(was_training)
    return out
