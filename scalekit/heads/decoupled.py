"""R-FCN-3000's decoupled head (Singh, Li, Sharma, Davis; CVPR 2018; thesis
§4.4): super-class detection x fine-grained classification."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from scalekit.heads._common import (
    PSVote,
    RoIHead,
    check_image_sizes,
    check_int,
    check_real,
    classification_losses,
    clip_to_images,
    detections,
)
from scalekit.ops import grouped_nms, ps_roi_align

__all__ = ["DecoupledHead"]

NMS_GROUPINGS = ("class", "superclass", "agnostic")


class DecoupledHead(RoIHead):
    """Detection decoupled into super-class (or objectness) detection and classification.

    * **Super-class detection** (R-FCN): 1x1 conv + ReLU, then ``(K + 1) * P * P``
      position-sensitive filters, PSRoI pooling, voting by averaging, softmax
      over background and ``K`` super-classes. ``K = 1`` is pure objectness.
    * **Boxes**: an independent 1x1 conv + ReLU, ``4 * P * P`` class-agnostic
      position-sensitive filters.
    * **Fine-grained classification**: two conv layers (3x3 + ReLU, 1x1 to
      ``C``) on the feature map; the per-class scores are average-pooled inside
      each RoI and soft-maxed over the ``C`` classes.

    The score of class ``c`` is ``p(super-class of c) * p(c)``
    (:meth:`class_scores`). Labels follow torchvision: classes ``1..C``, 0 is
    background; ``superclass_of[c - 1]`` is the super-class of class ``c``.

    NMS groups are separate from the super-classes (thesis §4.5.4: "the
    clusters used during NMS can be different from those which are used when
    grouping classes for R-FCN", Table 4.4 varies them): boxes of classes in
    one NMS group suppress each other, boxes of different groups never do.

    Args:
        in_channels: channels of the feature map.
        num_classes: ``C`` fine-grained classes.
        superclass_of: ``[C]`` super-class ids in ``[0, K)`` (from
            :func:`~scalekit.heads.discover_superclasses`); ``None``: ``K = 1``.
        pool_size: ``P``.
        spatial_scale: feature-map size / image size; ``None``: inferred at each call
            from ``image_sizes`` (see :class:`~scalekit.heads.RFCNHead`).
        sampling_ratio: PSRoIAlign samples per bin side.
        mid_channels: width of the detection and box branches' 1x1 convs.
        fine_channels: width of the fine-grained branch's first conv.
        class_loss_weight: weight of the fine-grained loss (0.05 in the thesis, §4.4.5).
        deformable: deformable PSRoI pooling for the detection and box branches.
        nms_groups: ``"class"`` (default: NMS per class, the usual detector's and
            :class:`~scalekit.heads.RFCNHead`'s), ``"superclass"`` (one group per
            super-class of ``superclass_of``), ``"agnostic"`` (one group: class-agnostic
            NMS), or a ``[C]`` tensor of non-negative group ids (any clustering, e.g.
            :func:`~scalekit.heads.discover_superclasses` with another ``k``). The
            ``[C]`` groups in use are the buffer ``nms_group_of``.

    Example:
        >>> import torch
        >>> from scalekit.heads import DecoupledHead
        >>> head = DecoupledHead(64, num_classes=10, superclass_of=torch.arange(10) % 3, pool_size=3,
        ...                      spatial_scale=1 / 8, mid_channels=32, fine_channels=32, nms_groups="superclass")
        >>> outputs = head(torch.randn(1, 64, 20, 20), [torch.tensor([[8.0, 8, 80, 100], [0, 0, 40, 40]])])
        >>> outputs["det_logits"].shape, outputs["box_deltas"].shape, outputs["class_logits"].shape
        (torch.Size([2, 4]), torch.Size([2, 4]), torch.Size([2, 10]))
        >>> head.class_scores(outputs).shape, head.nms_group_of
        (torch.Size([2, 10]), tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0]))
    """

    def __init__(self, in_channels: int, num_classes: int, superclass_of: Tensor | None = None, pool_size: int = 7,
                 spatial_scale: float | None = 1 / 16, sampling_ratio: int = 2, mid_channels: int = 1024,
                 fine_channels: int = 1024, class_loss_weight: float = 0.05, deformable: bool = False,
                 nms_groups: str | Tensor = "class") -> None:
        super().__init__()
        in_channels = check_int(in_channels, "in_channels", 1)
        self.num_classes = num_classes = check_int(num_classes, "num_classes", 1)
        if superclass_of is None:
            superclass_of = torch.zeros(num_classes, dtype=torch.int64)
        superclass_of = _group_ids(superclass_of, "superclass_of", num_classes)
        self.register_buffer("superclass_of", superclass_of)
        self.nms_grouping = "custom" if not isinstance(nms_groups, str) else nms_groups
        if self.nms_grouping not in NMS_GROUPINGS + ("custom",):
            raise ValueError(f"nms_groups must be one of {NMS_GROUPINGS} or a [C] tensor of group ids, "
                             f"got {nms_groups!r}")
        groups = (_group_ids(nms_groups, "nms_groups", num_classes) if self.nms_grouping == "custom" else
                  {"class": torch.arange(num_classes), "superclass": superclass_of,
                   "agnostic": torch.zeros(num_classes, dtype=torch.int64)}[self.nms_grouping].clone())
        self.register_buffer("nms_group_of", groups)
        self._register_load_state_dict_pre_hook(_nms_groups_of_older_checkpoints, with_module=True)
        self.num_superclasses = k = int(superclass_of.max()) + 1
        self.pool_size = pool_size = check_int(pool_size, "pool_size", 1)
        self.spatial_scale = None if spatial_scale is None else check_real(spatial_scale, "spatial_scale", 0,
                                                                           strict=True)
        self.sampling_ratio = sampling_ratio = check_int(sampling_ratio, "sampling_ratio", -(2 ** 31))
        mid_channels = check_int(mid_channels, "mid_channels", 1)
        fine_channels = check_int(fine_channels, "fine_channels", 1)
        self.class_loss_weight = check_real(class_loss_weight, "class_loss_weight", 0)
        p2 = pool_size * pool_size
        self.det_reduce = nn.Sequential(nn.Conv2d(in_channels, mid_channels, 1), nn.ReLU(inplace=True))
        self.box_reduce = nn.Sequential(nn.Conv2d(in_channels, mid_channels, 1), nn.ReLU(inplace=True))
        self.super_maps = nn.Conv2d(mid_channels, (k + 1) * p2, 1)
        self.box_maps = nn.Conv2d(mid_channels, 4 * p2, 1)
        self.fine = nn.Sequential(nn.Conv2d(in_channels, fine_channels, 3, padding=1), nn.ReLU(inplace=True))
        self.fine_cls = nn.Conv2d(fine_channels, num_classes, 1)
        for conv, std in ((self.super_maps, 0.01), (self.box_maps, 0.001), (self.fine_cls, 0.01)):
            nn.init.normal_(conv.weight, std=std)
            nn.init.zeros_(conv.bias)
        self.super_vote = PSVote(k + 1, pool_size, sampling_ratio, bool(deformable))
        self.box_vote = PSVote(4, pool_size, sampling_ratio, bool(deformable))

    def forward(self, features: Tensor, proposals: list[Tensor], image_sizes=None) -> dict:
        """``features`` ``[N, in_channels, H, W]``, ``proposals`` N tensors ``[L, 4]``, ``image_sizes``
        ``(height, width)`` per image (optional; checks or infers the spatial scale) -> dict with
        ``rois [R, 5]`` (batch index first, reused by ``loss`` and ``postprocess``),
        ``det_logits [R, K + 1]`` (background first, then the super-classes),
        ``box_deltas [R, 4]`` and ``class_logits [R, C]`` (fine-grained, no background)."""
        rois, scale = self.rois(features, proposals, image_sizes)
        # The class scores are the average of the per-class score maps (a 1x1 conv on the branch)
        # inside each RoI. Averaging and the 1x1 conv are both linear, so the conv is applied to
        # each RoI's average feature instead: fine_channels maps pooled rather than C, the same
        # function for RoIs on the map (and the bias counts whole even where a RoI leaves the map).
        fine = ps_roi_align(self.fine(features), rois, 1, scale, -1).flatten(1)
        return {
            "rois": rois,
            "det_logits": self.super_vote(self.super_maps(self.det_reduce(features)), rois, scale),
            "box_deltas": self.box_vote(self.box_maps(self.box_reduce(features)), rois, scale),
            "class_logits": F.linear(fine, self.fine_cls.weight.flatten(1), self.fine_cls.bias),
        }

    def class_scores(self, outputs: dict) -> Tensor:
        """``[R, C]``: ``p(super-class of c) * p(c)`` for every RoI and class."""
        p_super = outputs["det_logits"].softmax(1)[:, 1:]
        return p_super[:, self.superclass_of] * outputs["class_logits"].softmax(1)

    def loss(self, outputs: dict, targets: list[dict], *, ohem: int | None = None,
             iou_threshold: float = 0.5, beta: float = 1.0) -> dict:
        """Losses of thesis §4.4.4-4.4.5 for ``outputs`` of :meth:`forward`.

        Super-class labels as Fast R-CNN: a RoI is positive for the super-class
        of the ground truth it overlaps most if their IoU is ``> iou_threshold``.
        Softmax loss over ``K + 1`` and smooth-L1 on positives, optionally with
        OHEM (``ohem`` hardest RoIs per image); the fine-grained softmax over
        ``C`` is trained on positive RoIs only, weighted by ``class_loss_weight``.
        RoIs matched to an ``"ignore_boxes"`` entry take part in no loss.
        """
        labels, box_targets, index = self.targets_for(outputs, targets, inclusive=False, iou_threshold=iou_threshold)
        positive = labels > 0
        super_labels = torch.where(positive, self.superclass_of[(labels - 1).clamp(min=0)] + 1, labels.clamp(max=0))
        det, box, _ = classification_losses(outputs["det_logits"], super_labels, outputs["box_deltas"], box_targets,
                                            index, ohem, beta)
        if positive.any():
            cls = F.cross_entropy(outputs["class_logits"][positive], labels[positive] - 1)
        else:
            cls = outputs["class_logits"].sum() * 0
        return {"loss_det": det, "loss_box": box, "loss_cls": self.class_loss_weight * cls}

    @torch.no_grad()
    def postprocess(self, outputs: dict, image_sizes, *, score_threshold: float = 0.01,
                    nms_threshold: float = 0.3, detections_per_image: int = 100,
                    objectness: Tensor | None = None, box_regression: bool = True) -> list[dict]:
        """Boxes, scores and labels per image, with NMS within each group of
        ``nms_group_of`` (:func:`~scalekit.ops.grouped_nms`, thesis §4.5.4):
        classes of one group compete, classes of different groups do not.

        ``objectness``: ``[R]`` scores in ``[0, 1]`` that replace ``p(super-class)``
        (thesis Table 4.5 uses the RPN's, :func:`~scalekit.detection.proposal_detections`):
        a RoI's score for class ``c`` is then ``objectness * p(c)``.
        ``box_regression=False``: each RoI's box is the RoI itself (clipped), not
        the detection branch's regression of it."""
        boxes, index = self.boxes(outputs, image_sizes)
        if not box_regression:
            boxes = clip_to_images(outputs["rois"][:, 1:], index, check_image_sizes(image_sizes))
        if objectness is None:
            scores = self.class_scores(outputs)
        else:
            if not isinstance(objectness, Tensor) or objectness.shape != (len(boxes),):
                raise ValueError(f"objectness must be a [{len(boxes)}] tensor (one score per RoI), got "
                                 f"{list(objectness.shape) if isinstance(objectness, Tensor) else type(objectness).__name__}")
            # in float32 whatever the autocast dtype: bfloat16 would merge nearby scores and reorder them
            scores = objectness.float().to(boxes.device)[:, None] * outputs["class_logits"].float().softmax(1)
        groups = self.nms_group_of

        def nms(b, s, lab):
            return grouped_nms(b, s, lab - 1, groups, nms_threshold)

        return detections(boxes, scores, index, len(image_sizes), nms, score_threshold, detections_per_image)

    @torch.no_grad()
    def image_features(self, features: Tensor) -> Tensor:
        """``[N, fine_channels]``: the fine-grained branch's features averaged over
        each whole image (classification data has no boxes)."""
        return self.fine(features).mean((2, 3))

    def add_class(self, positive_features: Tensor, negative_features: Tensor, superclass: int | None = None,
                  *, nms_group: int | None = None, steps: int = 100, weight_decay: float = 1e-3) -> int:
        """Add a class from classification data alone (thesis §4.6.3): fit one new row
        of the fine-grained classifier, the other rows frozen.

        The new row is fitted with the full softmax on image features
        (:meth:`image_features`): positives must be classified as the new
        class, negatives (images of known classes) as the known class they
        already score highest. L-BFGS, a few hundred milliseconds.

        Args:
            positive_features: ``[n, fine_channels]`` features of images of the new class.
            negative_features: ``[m, fine_channels]`` features of other images.
            superclass: the new class's super-class; default: the most common
                super-class of the known classes the positives score highest.
            nms_group: the new class's NMS group; default: its own group with
                ``nms_groups="class"`` or a tensor of groups, group 0 with
                ``"agnostic"``, its super-class's with ``"superclass"``.
            steps: L-BFGS iterations.
            weight_decay: L2 penalty on the new row.

        Returns:
            The new class's label (``C + 1`` for a head that had ``C`` classes).
        """
        if superclass is not None:
            superclass = check_int(superclass, "superclass", 0)
            if superclass >= self.num_superclasses:
                raise ValueError(f"superclass must lie in [0, K) = [0, {self.num_superclasses}), got {superclass}")
        if nms_group is not None:
            nms_group = check_int(nms_group, "nms_group", 0)
        steps = check_int(steps, "steps", 1)
        weight_decay = check_real(weight_decay, "weight_decay", 0)
        w_old = self.fine_cls.weight.detach().flatten(1)
        b_old = self.fine_cls.bias.detach()
        pos, neg = positive_features.detach().to(w_old), negative_features.detach().to(w_old)
        if pos.dim() != 2 or neg.dim() != 2 or pos.shape[1] != w_old.shape[1] or neg.shape[1] != w_old.shape[1]:
            raise ValueError(f"positive_features and negative_features must be [n, {w_old.shape[1]}]")
        if pos.shape[0] == 0 or neg.shape[0] == 0:
            raise ValueError("add_class needs at least one positive and one negative image")
        if not (torch.isfinite(pos).all() and torch.isfinite(neg).all()):
            raise ValueError("positive_features and negative_features must be finite")
        x = torch.cat([pos, neg])
        old_logits = x @ w_old.T + b_old
        target = torch.cat([torch.full((pos.shape[0],), self.num_classes, dtype=torch.int64, device=x.device),
                            old_logits[pos.shape[0]:].argmax(1)])
        w = torch.zeros(w_old.shape[1], device=x.device, requires_grad=True)
        b = torch.zeros((), device=x.device, requires_grad=True)
        opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            logits = torch.cat([old_logits, (x @ w + b)[:, None]], 1)
            loss = F.cross_entropy(logits, target) + weight_decay * w.square().sum()
            loss.backward()
            return loss

        opt.step(closure)
        if not (torch.isfinite(w).all() and torch.isfinite(b)):
            raise ValueError(f"add_class: fitting the new row diverged (positive_features and negative_features "
                             f"reach {float(x.abs().max()):.3g}; image features of a trained head are of order 1); "
                             "the head is unchanged")
        if superclass is None:
            superclass = int(self.superclass_of[old_logits[: pos.shape[0]].argmax(1)].mode().values)
        conv = nn.Conv2d(w_old.shape[1], self.num_classes + 1, 1).to(w_old)
        with torch.no_grad():
            conv.weight.copy_(torch.cat([w_old, w.detach()[None]]).view_as(conv.weight))
            conv.bias.copy_(torch.cat([b_old, b.detach()[None]]))
        self.fine_cls = conv
        if nms_group is None:
            nms_group = {"agnostic": 0, "superclass": superclass}.get(self.nms_grouping,
                                                                      int(self.nms_group_of.max()) + 1)
        self.superclass_of = torch.cat([self.superclass_of, self.superclass_of.new_tensor([superclass])])
        self.nms_group_of = torch.cat([self.nms_group_of, self.nms_group_of.new_tensor([nms_group])])
        self.num_classes += 1
        return self.num_classes


def _group_ids(groups, name: str, num_classes: int) -> Tensor:
    """``[C]`` int64 group ids (a list, numpy array or tensor of non-negative integers)."""
    try:
        ids = torch.as_tensor(groups)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(f"{name} must be [C] = [{num_classes}] integer ids, got {type(groups).__name__}") from exc
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer ids, got {ids.dtype}")
    if ids.shape != (num_classes,):
        raise ValueError(f"{name} must be [C] = [{num_classes}] ids, got {list(ids.shape)}")
    if ids.numel() and ids.min() < 0:
        raise ValueError(f"{name} must be non-negative ids, got {int(ids.min())}")
    return ids.to(torch.int64).cpu().clone()


def _nms_groups_of_older_checkpoints(module, state_dict, prefix, *args) -> None:
    """Checkpoints from before ``nms_group_of`` existed load strictly: their NMS groups
    are the constructor's ``nms_groups`` (per class when the checkpoint has another
    number of classes, e.g. after ``add_class``)."""
    key = prefix + "nms_group_of"
    classes = state_dict.get(prefix + "superclass_of")
    if key not in state_dict and classes is not None:
        same = len(classes) == len(module.nms_group_of)
        state_dict[key] = module.nms_group_of.clone() if same else torch.arange(len(classes))
