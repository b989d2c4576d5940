"""R-FCN-3000 at the detector level (thesis §4.6.3): class-agnostic objectness
detections of a detector built by :func:`~scalekit.detection.faster_rcnn_with_head`
(the measurement of objectness on classes never seen with boxes), and new
classes added from classification images alone."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from scalekit.detection.roi_heads import TorchvisionRoIHeads

__all__ = ["objectness_detections", "proposal_detections", "image_features", "add_class"]

def _roi_heads(model: nn.Module) -> TorchvisionRoIHeads:
    roi_heads = getattr(model, "roi_heads", None)
    if not isinstance(roi_heads, TorchvisionRoIHeads):
        raise TypeError("model must be a FasterRCNN from scalekit.detection.faster_rcnn_with_head (its roi_heads a "
                        f"TorchvisionRoIHeads), got roi_heads of type {type(roi_heads).__name__}")
    return roi_heads

def _check_images(images, name: str) -> list[Tensor]:
    if isinstance(images, Tensor):
        if images.dim() != 4:
            raise ValueError(f"{name} must be [N, 3, H, W] or a list of [3, H, W] images, got {list(images.shape)}")
        images = list(images)
    images = list(images)
    for i, im in enumerate(images):
        if not isinstance(im, Tensor) or im.dim() != 3:
            raise ValueError(f"{name}[{i}] must be a [3, H, W] tensor, got "
                             f"{list(im.shape) if isinstance(im, Tensor) else type(im).__name__}")
        if not im.is_floating_point():
            raise TypeError(f"{name}[{i}] must be a float image in [0, 1] (as torchvision's detectors take), got "
                            f"{im.dtype}; divide a uint8 image by 255")
    return images

class _EvalMode:
    """``model.eval()`` inside, the caller's mode restored on exit."""

    def __init__(self, model: nn.Module):
        self.model, self.was_training = model, model.training

    def __enter__(self):
        self.model.eval()

    def __exit__(self, *exc):
        self.model.train(self.was_training)


def _through_backbone(model: nn.Module, images: list[Tensor]):
    """The model's own first steps: ``(original sizes, transformed batch, {name: feature map})``."""
    original_sizes = [tuple(im.shape[-2:]) for im in images]
    batch, _ = model.transform(images)
    features = model.backbone(batch.tensors)
    return original_sizes, batch, ({"0": features} if isinstance(features, Tensor) else features)


@torch.no_grad()
def objectness_detections(model: nn.Module, images, *, score_threshold: float = 0.0,
                          nms_threshold: float | None = None, detections_per_image: int | None = None) -> list[dict]:
    """Class-agnostic detections of a decoupled (or R-FCN) detector, in input pixels.

    The same forward as ``model.eval()(images)`` — the detector's transform,
    backbone and RPN — but each RoI is scored by its objectness, ``1 -
    p(background)`` of the head's detection branch, whatever classes it knows;
    boxes are the head's class-agnostic regression, NMS is class-agnostic, and
    every label is 1. Evaluated on objects of classes the detector never saw
    with boxes, this is thesis §4.6.3's test of whether objectness generalises.

    Args:
        model: a ``FasterRCNN`` from :func:`~scalekit.detection.faster_rcnn_with_head`
            (any head of :mod:`scalekit.heads`). Run in eval mode; its mode is restored.
        images: ``[3, H, W]`` float images in ``[0, 1]`` (a list, or an ``[N, 3, H, W]`` batch).
        score_threshold: detections with objectness at most this are dropped.
        nms_threshold, detections_per_image: default: the model's post-processing
            settings (the head's 0.3 and 100 unless set).

    Returns:
        One ``{"boxes" [D, 4], "scores" [D], "labels" [D] (all 1)}`` per image.

    Example:
        >>> import torch
        >>> from scalekit.detection import faster_rcnn_with_head, objectness_detections
        >>> from scalekit.heads import DecoupledHead
        >>> backbone = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, stride=8, padding=1), torch.nn.ReLU())
        >>> backbone.out_channels = 16
        >>> head = DecoupledHead(16, num_classes=5, pool_size=3, spatial_scale=1 / 8, mid_channels=16,
        ...                      fine_channels=16)
        >>> model = faster_rcnn_with_head(backbone, head, min_size=128, max_size=128)
        >>> dets = objectness_detections(model, [torch.rand(3, 128, 96)])
        >>> sorted(dets[0]), set(dets[0]["labels"].tolist()) <= {1}
        (['boxes', 'labels', 'scores'], True)
    """
    roi_heads = _roi_heads(model)
    images = _check_images(images, "images")
    kwargs = {k: v for k, v in (("nms_threshold", nms_threshold), ("detections_per_image", detections_per_image))
              if v is not None}
    with _EvalMode(model):
        original_sizes, batch, features = _through_backbone(model, images)
        proposals, _ = model.rpn(batch, features)
        dets = roi_heads.objectness_detections(features, proposals, batch.image_sizes,
                                               score_threshold=score_threshold, **kwargs)
        return model.transform.postprocess(dets, batch.image_sizes, original_sizes)

def _proposals_and_scores(rpn: nn.Module, batch, features) -> tuple[list[Tensor], list[Tensor]]:
    """The RPN's proposals and their scores (probabilities), exactly those of its own forward:
    torchvision's ``RegionProposalNetwork.forward`` keeps the scores ``filter_proposals`` returns to
    itself, so that call is watched for the duration of one forward."""
    seen = []
    own = rpn.__dict__.get("filter_proposals")  # an instance's own override stays as it was
    original = rpn.filter_proposals

    def watched(*args, **kwargs):
        out = original(*args, **kwargs)
        seen.append(out[1])
        return out

    rpn.filter_proposals = watched
    try:
        proposals, _ = rpn(batch, features)
    finally:
        if own is None:
            del rpn.filter_proposals
        else:
            rpn.filter_proposals = own
    if not seen:
        raise TypeError(f"the model's RPN ({type(rpn).__name__}) never called filter_proposals: proposal_detections "
                        "needs torchvision's RegionProposalNetwork (or a subclass that keeps its forward)")
    return proposals, seen[-1]


@torch.no_grad()
def proposal_detections(model: nn.Module, images, *, box_regression: bool = False,
                        score_threshold: float | None = None, nms_threshold: float | None = None,
                        detections_per_image: int | None = None) -> list[dict]:
    """Detections of a decoupled detector whose objectness is the RPN's score (thesis Table 4.5).

    R-FCN-3000's alternative to its detection branch: each proposal keeps the
    score the RPN gave it, ``p_rpn``, and the fine-grained classifier labels
    it, so class ``c`` scores ``p_rpn * p(c)``; the super-class branch is not
    used. The box is the proposal itself, or with ``box_regression`` the
    detection branch's class-agnostic regression of it (the thesis' "BBR").
    NMS within the head's ``nms_group_of`` groups, as the detector's own
    post-processing. The forward is the model's own (transform, backbone, RPN).

    Args:
        model: a ``FasterRCNN`` from :func:`~scalekit.detection.faster_rcnn_with_head`
            with a :class:`~scalekit.heads.DecoupledHead`. Run in eval mode; its mode is restored.
        images: ``[3, H, W]`` float images in ``[0, 1]`` (a list, or an ``[N, 3, H, W]`` batch).
        box_regression: regress each proposal with the head's box branch.
        score_threshold, nms_threshold, detections_per_image: default: the model's
            post-processing settings.

    Returns:
        One ``{"boxes" [D, 4], "scores" [D], "labels" [D]}`` per image, in input pixels
        (labels ``1..C`` as the model's own detections).

    Example:
        >>> import torch
        >>> from scalekit.detection import faster_rcnn_with_head, proposal_detections
        >>> from scalekit.heads import DecoupledHead
        >>> backbone = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, stride=8, padding=1), torch.nn.ReLU())
        >>> backbone.out_channels = 16
        >>> head = DecoupledHead(16, num_classes=5, pool_size=3, spatial_scale=1 / 8, mid_channels=16,
        ...                      fine_channels=16)
        >>> model = faster_rcnn_with_head(backbone, head, min_size=128, max_size=128)
        >>> dets = proposal_detections(model, [torch.rand(3, 128, 96)], box_regression=True)
        >>> sorted(dets[0]), bool((dets[0]["scores"] <= 1).all())
        (['boxes', 'labels', 'scores'], True)
    """
    roi_heads = _roi_heads(model)
    if not callable(getattr(roi_heads.head, "class_scores", None)) or not hasattr(roi_heads.head, "fine_cls"):
        raise TypeError(f"the model's head ({type(roi_heads.head).__name__}) has no fine-grained classifier: "
                        "proposal_detections needs a DecoupledHead")
    images = _check_images(images, "images")
    kwargs = {**roi_heads.postprocess_kwargs, **{k: v for k, v in (
        ("score_threshold", score_threshold), ("nms_threshold", nms_threshold),
        ("detections_per_image", detections_per_image)) if v is not None}}
    with _EvalMode(model):
        original_sizes, batch, features = _through_backbone(model, images)
        proposals, scores = _proposals_and_scores(model.rpn, batch, features)
        outputs = roi_heads.head(roi_heads.feature_map(features), proposals, batch.image_sizes)
        dets = roi_heads.head.postprocess(outputs, batch.image_sizes, objectness=torch.cat(scores),
                                          box_regression=bool(box_regression), **kwargs)
        return model.transform.postprocess(dets, batch.image_sizes, original_sizes)


@torch.no_grad()
def image_features(model: nn.Module, images, *, batch_size: int = 128) -> Tensor:
    """``[N, D]`` image-level features of a decoupled detector's fine-grained branch
    (:meth:`~scalekit.heads.DecoupledHead.image_features`) for classification images.

    Images are normalised as the detector's inputs (its transform's mean and
    std) but not resized: crops of a classification set reach the backbone
    at their own size. Equal-sized images run ``batch_size`` at a time.

    Args:
        model: a ``FasterRCNN`` from :func:`~scalekit.detection.faster_rcnn_with_head`
            with a :class:`~scalekit.heads.DecoupledHead`. Run in eval mode; its mode is restored.
        images: ``[3, H, W]`` float images in ``[0, 1]`` (a list, or an ``[N, 3, H, W]`` batch).
        batch_size: images per backbone call.
    """
    roi_heads = _roi_heads(model)
    if not callable(getattr(roi_heads.head, "image_features", None)):
        raise TypeError(f"the model's head ({type(roi_heads.head).__name__}) has no image_features: "
                        "add_class needs a DecoupledHead")
    images = _check_images(images, "images")
    if not images:
        raise ValueError("images must hold at least one image")
    device = next(model.parameters()).device
    out = []
    with _EvalMode(model):
        i = 0
        while i < len(images):
            j = i + 1
            while j < len(images) and j - i < batch_size and images[j].shape == images[i].shape:
                j += 1
            x = torch.stack([model.transform.normalize(im.to(device)) for im in images[i:j]])
            out.append(roi_heads.head.image_features(roi_heads.feature_map(model.backbone(x))).float())
            i = j
    return torch.cat(out)

def add_class(model: nn.Module, positive_images, negative_images=None, superclass: int | None = None, *,
              negative_features: Tensor | None = None, batch_size: int = 128, **kwargs) -> int:
    """Add a class to a decoupled detector from classification images alone (thesis §4.6.3).

    Objectness generalises to unseen classes, so a new class needs only a new
    row of the fine-grained classifier: this takes :func:`image_features` of
    images of the new class and of known classes and fits the row with
    :meth:`~scalekit.heads.DecoupledHead.add_class` (``superclass`` and
    ``kwargs``, e.g. ``nms_group`` or ``steps``, go to it). The detector then
    detects the class; its label is returned.

    Args:
        model: a ``FasterRCNN`` from :func:`~scalekit.detection.faster_rcnn_with_head`
            with a :class:`~scalekit.heads.DecoupledHead`.
        positive_images: ``[3, H, W]`` float images of the new class (a list or an ``[N, 3, H, W]`` batch).
        negative_images: images of known classes, the same way.
        negative_features: instead of ``negative_images``, their ``[m, D]``
            :func:`image_features`, computed once for many new classes.

    Returns:
        The new class's label, ``C + 1`` for a detector of ``C`` classes.

    Example:
        >>> import torch
        >>> from scalekit.detection import add_class, faster_rcnn_with_head, image_features
        >>> from scalekit.heads import DecoupledHead
        >>> backbone = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, stride=8, padding=1), torch.nn.ReLU())
        >>> backbone.out_channels = 16
        >>> head = DecoupledHead(16, num_classes=5, pool_size=3, spatial_scale=1 / 8, mid_channels=16,
        ...                      fine_channels=16)
        >>> model = faster_rcnn_with_head(backbone, head, min_size=128, max_size=128)
        >>> add_class(model, torch.rand(4, 3, 40, 40), torch.rand(8, 3, 40, 40))
        6
        >>> known = image_features(model, torch.rand(8, 3, 40, 40))  # once, for several new classes
        >>> add_class(model, torch.rand(4, 3, 40, 40), negative_features=known)
        7
    """
    if (negative_images is None) == (negative_features is None):
        raise ValueError("add_class needs exactly one of negative_images and negative_features")
    positives = image_features(model, positive_images, batch_size=batch_size)
    negatives = (image_features(model, negative_images, batch_size=batch_size) if negative_features is None
                 else negative_features)
    return _roi_heads(model).head.add_class(positives, negatives, superclass, **kwargs)
