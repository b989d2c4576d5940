"""Non-maximum merging: SAHI's greedy NMM and NMM as compiled ops.

Sliced inference (SAHI, Akyon et al. 2022) sees an object cut by a slice
border as two or more partial detections; instead of suppressing all but one
(NMS), *non-maximum merging* merges matched detections into the union of their
boxes. Both functions here give the results of SAHI's ``greedy_nmm`` / ``nmm``
followed by its ``GreedyNMMPostprocess`` / ``NMMPostprocess`` (measured
equal on random inputs in ``tests/ops/test_merge.py``) from tensors, without
SAHI's per-box Python objects.

Conventions, shared by both functions:

* boxes are ``(x1, y1, x2, y2)``; areas are ``(x2 - x1) * (y2 - y1)``; the
  metric is IoU or IoS (intersection over the smaller of the two areas), 0
  where its denominator is not positive (two empty boxes);
* a pair *matches* when its metric is ``>= match_threshold`` (SAHI's ``>=``,
  where NMS uses ``>``). Metrics are computed in float32 for float16, bfloat16
  and float32 boxes and in float64 for float64 boxes, and compared with the
  threshold rounded to that precision, as SAHI's candidate search does (an IoU
  of exactly 7/10 matches 0.7). SAHI's re-check computes in float64 whatever
  the boxes: the two can differ only for a metric within a float32 rounding of
  the threshold that is not equal to it;
* boxes are visited by decreasing score, ties by ``(x1, y1, x2, y2)``
  ascending and then by index (SAHI's order);
* a keeper's matched boxes (its *candidates*) are merged one by one, in SAHI's
  order, into the merged box as it grows; a candidate that no longer matches
  the grown box is dropped, neither merged nor kept (SAHI's re-check);
* the merged score is the keeper's (the highest of its group); the label of a
  merged box is the keeper's, ``labels[keep]`` (SAHI's postprocess takes the
  category of a merged box of *equal* score instead, the last one merged);
* with ``idxs``, only boxes of the same category match; results stay in one
  order by decreasing score (SAHI's batched functions list them category by
  category);
* boxes may have any finite coordinates (SAHI's prediction objects clip them
  at 0 first); for two empty boxes the metric is 0 in the re-check too (SAHI's
  re-check divides 0 by 0 there, which matters only for a threshold <= 0);
* non-finite boxes or scores raise a :class:`ValueError`;
* no gradient flows through either function, and neither exports to ONNX yet.
"""

from __future__ import annotations

import torch
from torch import Tensor

from scalekit import _ext
from scalekit.ops._checks import check_boxes, check_number, check_per_box, fx_leaf

__all__ = ["greedy_nmm", "nmm", "MATCH_METRICS"]

MATCH_METRICS = ("iou", "ios")


def _merge_args(boxes, scores, idxs, match_threshold, metric):
    _ext.assert_has_ops()
    check_boxes(boxes)
    check_per_box(scores, boxes, "scores")
    if idxs is not None:
        check_per_box(idxs, boxes, "idxs", integer=True)
        idxs = idxs.to(torch.int64)
    match_threshold = check_number(match_threshold, "match_threshold")
    if not isinstance(metric, str) or metric.lower() not in MATCH_METRICS:
        raise ValueError(f"metric must be one of {MATCH_METRICS} (any case), got {metric!r}")
    return boxes, scores, idxs, match_threshold, metric.lower()


@fx_leaf
def greedy_nmm(
    boxes: Tensor,
    scores: Tensor,
    idxs: Tensor | None = None,
    match_threshold: float = 0.5,
    metric: str = "iou",
) -> tuple[Tensor, Tensor, Tensor]:
    """Greedy non-maximum merging: SAHI's ``GREEDYNMM`` as one op.

    Visits boxes by decreasing score. A box not yet taken becomes a *keeper*
    and takes every box not yet taken that matches it (metric
    ``>= match_threshold``); those are merged, in visiting order, into the
    union box of the keeper, each only if it still matches the union grown so
    far (else it is dropped). Equal to SAHI's ``greedy_nmm`` and
    ``GreedyNMMPostprocess`` (``batched_greedy_nmm`` / ``class_agnostic=False``
    with ``idxs``); see the module docstring for the conventions.

    Defaults ``match_threshold=0.5``, ``metric="iou"`` are those of SAHI's
    postprocess classes; its ``get_sliced_prediction`` merges with
    ``metric="ios"``, 0.5, per class. Not exportable to ONNX yet.

    Args:
        boxes: ``[N, 4]`` boxes ``(x1, y1, x2, y2)``, float16/bfloat16/float32/float64.
        scores: ``[N]`` floating point scores.
        idxs: ``[N]`` integer category of each box, or None to merge across categories.
        match_threshold: a pair matches when its metric is ``>= match_threshold``.
        metric: ``"iou"`` or ``"ios"`` (intersection over the smaller area), any case.

    Returns:
        ``(keep, merged_boxes, merged_scores)``: ``[K]`` int64 indices of the
        keepers by decreasing score, ``[K, 4]`` their merged boxes (dtype of
        ``boxes``) and ``[K]`` their scores (dtype of ``scores``). The labels of
        the merged boxes are ``labels[keep]``.

    Example:
        >>> import torch
        >>> from scalekit.ops import greedy_nmm
        >>> boxes = torch.tensor([[0.0, 0, 10, 10], [5, 0, 15, 10], [50, 50, 60, 60]])
        >>> keep, merged, merged_scores = greedy_nmm(boxes, torch.tensor([0.9, 0.8, 0.7]), match_threshold=0.3)
        >>> keep
        tensor([0, 2])
        >>> merged
        tensor([[ 0.,  0., 15., 10.],
                [50., 50., 60., 60.]])
    """
    boxes, scores, idxs, match_threshold, metric = _merge_args(boxes, scores, idxs, match_threshold, metric)
    return _ext.call_op(torch.ops.scalekit.greedy_nmm, boxes, scores, idxs, match_threshold, metric)


@fx_leaf
def nmm(
    boxes: Tensor,
    scores: Tensor,
    idxs: Tensor | None = None,
    match_threshold: float = 0.5,
    metric: str = "iou",
) -> tuple[Tensor, Tensor, Tensor]:
    """Non-maximum merging with transitive groups: SAHI's ``NMM`` as one op.

    Visits every box by decreasing score. A box not yet taken starts a group
    as its keeper; every visited box, keeper or not, takes into its group the
    boxes not yet taken that match it and that it *dominates* (a lower score,
    or the same score and the same coordinates, SAHI's rule), so that a chain
    A-B-C merges even where A and C do not match. A group's candidates are then
    merged into the keeper's box in the order they were taken (each box's
    takes by index), each only if it still matches the union grown so far.
    Equal to SAHI's ``nmm`` and ``NMMPostprocess``; see the module docstring
    for the conventions. Not exportable to ONNX yet.

    Args:
        boxes: ``[N, 4]`` boxes ``(x1, y1, x2, y2)``, float16/bfloat16/float32/float64.
        scores: ``[N]`` floating point scores.
        idxs: ``[N]`` integer category of each box, or None to merge across categories.
        match_threshold: a pair matches when its metric is ``>= match_threshold``.
        metric: ``"iou"`` or ``"ios"`` (intersection over the smaller area), any case.

    Returns:
        ``(keep, merged_boxes, merged_scores)`` as :func:`greedy_nmm`.

    Example:
        >>> import torch
        >>> from scalekit.ops import greedy_nmm, nmm
        >>> boxes = torch.tensor([[0.0, 0, 10, 10], [6, 0, 16, 10], [12, 0, 22, 10]])
        >>> scores = torch.tensor([0.9, 0.8, 0.7])
        >>> keep, merged, _ = nmm(boxes, scores, match_threshold=0.3, metric="ios")
        >>> keep  # the third box matches only the second: one group through it
        tensor([0])
        >>> merged
        tensor([[ 0.,  0., 22., 10.]])
        >>> greedy_nmm(boxes, scores, match_threshold=0.3, metric="ios")[0]  # no chains
        tensor([0, 2])
    """
    boxes, scores, idxs, match_threshold, metric = _merge_args(boxes, scores, idxs, match_threshold, metric)
    return _ext.call_op(torch.ops.scalekit.nmm, boxes, scores, idxs, match_threshold, metric)
