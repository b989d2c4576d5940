"""Ignore-aware training of a torchvision ``FasterRCNN``: SNIP's invalid ground
truth (thesis §2.6.1) and SNIPER's invalid boxes in chips (§3.3) are neither
objects nor background, and so are RoIs outside a scale's valid range (§3.3.4)."""

from __future__ import annotations

from torch import Tensor
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork

from scalekit.boxes import near_ignore, out_of_range
from scalekit.detection._patch import mix_in
from scalekit.detection.transform import _transform_of

__all__ = ["honour_ignore_boxes"]


def _ignore_boxes(target: dict, like: Tensor) -> Tensor:
    boxes = target.get("ignore_boxes")
    if boxes is None:
        return like.new_zeros((0, 4))
    if not isinstance(boxes, Tensor) or boxes.dim() != 2 or boxes.shape[1] != 4:
        shape = list(boxes.shape) if isinstance(boxes, Tensor) else type(boxes).__name__
        raise ValueError(f"target['ignore_boxes'] must be an [I, 4] tensor (x1, y1, x2, y2), got {shape}")
    return boxes.to(like)


class _IgnoreAwareRPN:
    """Anchors whose IoU with an ignore box exceeds ``ignore_iou_threshold``
    are labelled -1 (not sampled), overriding positives, as SNIPER's code does."""

    ignore_iou_threshold: float = 0.3

    def assign_targets_to_anchors(self, anchors, targets):
        labels, matched = super().assign_targets_to_anchors(anchors, targets)
        for labels_per_image, anchors_per_image, target in zip(labels, anchors, targets):
            ignore = _ignore_boxes(target, anchors_per_image)
            labels_per_image[near_ignore(anchors_per_image, ignore, self.ignore_iou_threshold)] = -1.0
        return labels, matched


class _IgnoreAwareRoIHeads:
    """Proposals labelled -1 (the sampler takes them as neither foreground nor
    background): with ``ignore_rule="proposal"``, those whose own size lies
    outside ``target["valid_range"]``; with either rule, those whose best match
    is an ignore box at IoU >= the foreground threshold."""

    ignore_rule: str = "proposal"
    _ignore: list | None = None
    _ranges: list | None = None

    def select_training_samples(self, proposals, targets):
        if targets is not None:
            self._ignore = [_ignore_boxes(t, proposals[0]) for t in targets]
            self._ranges = [t.get("valid_range") for t in targets]
            for i, (t, r) in enumerate(zip(targets, self._ranges)):
                out_of_range(t["boxes"], r, name=f"targets[{i}]['valid_range']")  # checks it
        try:
            return super().select_training_samples(proposals, targets)
        finally:
            self._ignore = self._ranges = None

    def assign_targets_to_proposals(self, proposals, gt_boxes, gt_labels):
        matched_idxs, labels = super().assign_targets_to_proposals(proposals, gt_boxes, gt_labels)
        if self._ignore is not None:
            threshold = self.proposal_matcher.high_threshold
            for p, gt, ignore, valid_range, lab in zip(proposals, gt_boxes, self._ignore, self._ranges, labels):
                lab[near_ignore(p, ignore, threshold, inclusive=True, gt_boxes=gt)] = -1
                if self.ignore_rule == "proposal":
                    lab[out_of_range(p, valid_range)] = -1
        return matched_idxs, labels


class _RangeAwareTransform:
    """torchvision's transform, plus: ``target["valid_range"]`` (a size, ``sqrt(area)``)
    is resized with the image, by ``sqrt(x factor * y factor)``."""

    def resize(self, image: Tensor, target=None):
        h, w = image.shape[-2:]
        image, target = super().resize(image, target)
        if target is not None and target.get("valid_range") is not None:
            nh, nw = image.shape[-2:]
            if (nh, nw) != (h, w):
                target["valid_range"] = target["valid_range"] * ((nh / h) * (nw / w)) ** 0.5
        return image, target


def honour_ignore_boxes(model: GeneralizedRCNN, *, rpn_ignore_iou: float = 0.3,
                        ignore_rule: str = "proposal") -> GeneralizedRCNN:
    """Make a torchvision ``FasterRCNN`` (any backbone, FPN or not) train with
    ``target["ignore_boxes"]`` and ``target["valid_range"]``, in place.

    * RPN: anchors with IoU ``> rpn_ignore_iou`` (0.3, SNIPER's
      invalid-anchor rule) with an ignore box get
      label -1 — neither positive nor negative, so their objectness and box
      losses are zero — overriding positives, as SNIPER's code does.
    * RoI heads (torchvision's ``RoIHeads``), ``ignore_rule="proposal"``
      (default, the thesis' rule): proposals — and the ground truth torchvision
      appends to them — whose own size ``sqrt(area)`` lies outside
      ``target["valid_range"]`` (``[2]``: lo, hi in the target's pixels, hi
      may be inf; absent: all sizes valid) are neither foreground nor
      background (thesis §3.3.4: "We do not filter ground-truth boxes based on
      R^i. Instead, proposals which do not fall in R^i are ignored during
      training"; §2.6.1: "if the area of an ROI ar(r) falls within a range
      [s_i^c, e_i^c], it is marked as valid, else it is invalid"). So at the
      finest scale a large background proposal is not a background sample.
      With either rule, proposals whose best match is an ignore box, at IoU at
      least the foreground threshold (0.5), are neither too (ignore boxes carry
      no class). ``ignore_rule="gt"`` is that second rule alone (scalekit's
      rule before; ``valid_range`` unread). Heads from :mod:`scalekit.heads`
      wrapped by :class:`TorchvisionRoIHeads` apply the same rules
      (:func:`scalekit.heads._common.assign`).
    * The transform resizes ``ignore_boxes`` with ``boxes``, and ``valid_range``
      by the geometric mean of its two factors, whenever it resizes.

    Ignore boxes are never appended to the proposals and never become targets.
    The modules keep their parameters and state-dict keys (their class gains
    a mix-in). Targets without ``"ignore_boxes"`` train exactly as before.

    Args:
        model: a torchvision ``GeneralizedRCNN`` with a ``RegionProposalNetwork``.
        rpn_ignore_iou: IoU above which an anchor near an ignore box is ignored.
        ignore_rule: ``"proposal"`` or ``"gt"``, which RoIs the heads ignore.

    Returns:
        ``model``.

    Example:
        >>> import torch, torchvision
        >>> from scalekit.detection import honour_ignore_boxes
        >>> model = honour_ignore_boxes(torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(
        ...     weights=None, weights_backbone=None, num_classes=3))
        >>> target = {"boxes": torch.tensor([[10.0, 10, 60, 60]]), "labels": torch.tensor([1]),
        ...           "ignore_boxes": torch.tensor([[100.0, 100, 300, 300]])}
        >>> losses = model([torch.rand(3, 320, 320)], [target])
        >>> sorted(losses)
        ['loss_box_reg', 'loss_classifier', 'loss_objectness', 'loss_rpn_box_reg']
    """
    if not isinstance(model, GeneralizedRCNN) or not isinstance(getattr(model, "rpn", None), RegionProposalNetwork):
        raise TypeError("model must be a torchvision FasterRCNN-style GeneralizedRCNN with a RegionProposalNetwork, "
                        f"got {type(model).__name__}")
    if not 0.0 <= rpn_ignore_iou <= 1.0:
        raise ValueError(f"rpn_ignore_iou must lie in [0, 1], got {rpn_ignore_iou}")
    if ignore_rule not in ("proposal", "gt"):
        raise ValueError(f"ignore_rule must be 'proposal' or 'gt', got {ignore_rule!r}")
    mix_in(_transform_of(model), _RangeAwareTransform)
    mix_in(model.rpn, _IgnoreAwareRPN).ignore_iou_threshold = float(rpn_ignore_iou)
    if isinstance(model.roi_heads, RoIHeads):
        mix_in(model.roi_heads, _IgnoreAwareRoIHeads).ignore_rule = ignore_rule
    return model
