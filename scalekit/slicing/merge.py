"""Merging the detections of overlapping slices on scalekit's kernels
(:mod:`scalekit.ops`): NMS, Soft-NMS, and SAHI's non-maximum *merging* (greedy
NMM and NMM: matched boxes merge into their union), per class or class-agnostic;
or any callable.

A named merge is a function ``(boxes, scores, labels, settings) -> (boxes, scores,
labels)`` in :data:`NAMED_MERGES`; a new kind is one function and one entry
there, and ``merge="<name>"`` takes it everywhere.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
from torch import Tensor

from scalekit._args import real
from scalekit.ops import batched_nms, batched_soft_nms, greedy_nmm, nmm, nms, soft_nms

__all__ = ["merge_detections", "MergeSettings", "NAMED_MERGES"]

Detections = tuple[Tensor, Tensor, Tensor]


@dataclasses.dataclass(frozen=True)
class MergeSettings:
    """The settings a named merge reads, checked when made (errors name the field).

    ``iou_threshold``: boxes overlap when their IoU is ``> iou_threshold``, in
    ``[0, 1]`` (for ``"greedy_nmm"`` and ``"nmm"``: when their ``match_metric``
    is ``>= iou_threshold``, as SAHI's merging does); ``match_metric``:
    ``"iou"`` or ``"ios"`` (intersection over the smaller area; the merges
    only); ``class_agnostic``: boxes of different labels merge too;
    ``sigma`` (``> 0``) and ``soft_nms_method``: Soft-NMS's decay
    (:func:`scalekit.ops.soft_nms`); ``score_threshold``: Soft-NMS drops boxes
    whose decayed score falls below it.

    Example:
        >>> MergeSettings(iou_threshold=0.6, class_agnostic=True).iou_threshold
        0.6
    """

    iou_threshold: float = 0.5
    class_agnostic: bool = False
    sigma: float = 0.5
    soft_nms_method: str = "gaussian"
    score_threshold: float = 0.0
    match_metric: str = "iou"

    def __post_init__(self):
        if not isinstance(self.match_metric, str) or self.match_metric.lower() not in ("iou", "ios"):
            raise ValueError(f"match_metric must be 'iou' or 'ios', got {self.match_metric!r}")
        object.__setattr__(self, "match_metric", self.match_metric.lower())
        iou_threshold = real("iou_threshold", self.iou_threshold)
        if not 0.0 <= iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
        if not isinstance(self.class_agnostic, bool):
            raise TypeError(f"class_agnostic must be True or False, got {type(self.class_agnostic).__name__} "
                            f"{self.class_agnostic!r}")
        object.__setattr__(self, "iou_threshold", iou_threshold)
        object.__setattr__(self, "sigma", real("sigma", self.sigma))
        object.__setattr__(self, "score_threshold", real("score_threshold", self.score_threshold))
        # Soft-NMS checks its own settings (method, sigma > 0): run it once on nothing so that
        # a bad value fails here, before any detector runs.
        empty = torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64)
        try:
            _soft_nms(*empty, self)
        except ValueError as exc:
            raise ValueError(str(exc).replace("method", "soft_nms_method", 1)) from None


def _nms(boxes: Tensor, scores: Tensor, labels: Tensor, s: MergeSettings) -> Detections:
    keep = (nms(boxes, scores, s.iou_threshold) if s.class_agnostic
            else batched_nms(boxes, scores, labels, s.iou_threshold))
    return boxes[keep], scores[keep], labels[keep]


def _soft_nms(boxes: Tensor, scores: Tensor, labels: Tensor, s: MergeSettings) -> Detections:
    args = (s.iou_threshold, s.sigma, s.score_threshold, s.soft_nms_method)
    keep, kept = (soft_nms(boxes, scores, *args) if s.class_agnostic
                  else batched_soft_nms(boxes, scores, labels, *args))
    return boxes[keep], kept, labels[keep]


def _merging(op: Callable) -> Callable[[Tensor, Tensor, Tensor, MergeSettings], Detections]:
    def merge(boxes: Tensor, scores: Tensor, labels: Tensor, s: MergeSettings) -> Detections:
        keep, merged, merged_scores = op(boxes, scores, None if s.class_agnostic else labels,
                                         match_threshold=s.iou_threshold, metric=s.match_metric)
        return merged, merged_scores, labels[keep]

    return merge


NAMED_MERGES: dict[str, Callable[[Tensor, Tensor, Tensor, MergeSettings], Detections]] = {
    "nms": _nms,
    "soft_nms": _soft_nms,
    "greedy_nmm": _merging(greedy_nmm),  # SAHI's GREEDYNMM, its get_sliced_prediction's default (with "ios")
    "nmm": _merging(nmm),
}
"""``merge=`` names and their functions. ``"nms"``: greedy NMS (a box overlapping a
higher-scored one is removed); ``"soft_nms"``: Soft-NMS (its score decays instead)."""


def _check_merge(merge) -> None:
    if isinstance(merge, str):
        if merge not in NAMED_MERGES:
            raise ValueError(f"merge must be one of {sorted(NAMED_MERGES)} or a callable "
                             f"(boxes, scores, labels) -> keep or (boxes, scores, labels), got {merge!r}")
    elif not callable(merge):
        raise TypeError(f"merge must be one of {sorted(NAMED_MERGES)} or a callable, got {type(merge).__name__}")


def _custom(merge: Callable, boxes: Tensor, scores: Tensor, labels: Tensor) -> Detections:
    """Run a user's merge; its result as ``(boxes, scores, labels)``, checked."""
    out = merge(boxes, scores, labels)
    if isinstance(out, (tuple, list)) and len(out) == 3:
        b, s, lab = (torch.as_tensor(x) for x in out)
        if b.numel() == 0:
            b = b.reshape(0, 4)
        if b.dim() != 2 or b.shape[1] != 4 or s.shape != (b.shape[0],) or lab.shape != (b.shape[0],):
            raise ValueError(f"merge returned boxes {list(b.shape)}, scores {list(s.shape)}, labels "
                             f"{list(lab.shape)}; expected [K, 4], [K], [K]")
        return b, s, lab
    if isinstance(out, Tensor) and out.dim() == 1 and (out.dtype == torch.bool or not out.is_floating_point()):
        if out.dtype == torch.bool:
            if out.shape[0] != boxes.shape[0]:
                raise ValueError(f"merge returned a boolean mask of {out.shape[0]} for {boxes.shape[0]} boxes")
        elif out.numel() and (int(out.min()) < 0 or int(out.max()) >= boxes.shape[0]):
            raise ValueError(f"merge returned indices in [{int(out.min())}, {int(out.max())}], outside "
                             f"[0, {boxes.shape[0]}) (the boxes it was given)")
        keep = out.to(boxes.device)
        return boxes[keep], scores[keep], labels[keep]
    what = f"a {out.dtype} tensor {list(out.shape)}" if isinstance(out, Tensor) else type(out).__name__
    raise TypeError(f"merge must return keep indices (a 1-D integer or bool tensor) or (boxes, scores, labels), "
                    f"got {what}")


def merge_detections(boxes: Tensor, scores: Tensor, labels: Tensor, merge="nms", *,
                     settings: MergeSettings | None = None) -> dict:
    """Merge detections that several slices found: ``{"boxes", "scores", "labels"}``.

    Args:
        boxes: ``[N, 4]`` float boxes ``(x1, y1, x2, y2)`` in image pixels.
        scores: ``[N]`` float scores.
        labels: ``[N]`` int64 labels.
        merge: a name in :data:`NAMED_MERGES` (``"nms"``, ``"soft_nms"``, ``"greedy_nmm"``, ``"nmm"``) or a
            callable ``merge(boxes, scores, labels)`` returning the indices (or
            a boolean mask) of the detections to keep, or new
            ``(boxes [K, 4], scores [K], labels [K])``.
        settings: :class:`MergeSettings` for a named merge (default: NMS per
            class at IoU 0.5, SAHI's benchmark setting).

    Returns:
        ``{"boxes" [K, 4], "scores" [K], "labels" [K]}``; the named merges
        return them by decreasing (Soft-NMS: decayed) score.

    Example:
        >>> import torch
        >>> from scalekit.slicing import merge_detections
        >>> boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11], [1, 1, 11, 11]])
        >>> merge_detections(boxes, torch.tensor([0.9, 0.8, 0.7]), torch.tensor([1, 1, 2]))["scores"]
        tensor([0.9000, 0.7000])
    """
    _check_merge(merge)
    if isinstance(merge, str):
        b, s, lab = NAMED_MERGES[merge](boxes, scores, labels, settings or MergeSettings())
    else:
        b, s, lab = _custom(merge, boxes, scores, labels)
    return {"boxes": b, "scores": s, "labels": lab}
