"""Non-maximum suppression: greedy NMS, Soft-NMS and grouped NMS.

Soft-NMS is Bodla, Singh, Chellappa and Davis, *Soft-NMS -- Improving Object
Detection With One Line of Code* (ICCV 2017), used by SNIP and SNIPER (thesis
§2.6.1, §3.4.4) to merge the detections of all pyramid levels. Grouped NMS is
R-FCN-3000's NMS per super-class (thesis §4.5.4).

Conventions, shared by every function here:

* boxes are ``(x1, y1, x2, y2)``; IoU and areas are computed in float32 for
  float16, bfloat16 and float32 inputs and in float64 for float64 inputs;
* a box suppresses another when their IoU is *strictly* greater than
  ``iou_threshold`` (torchvision's convention; py-faster-rcnn's ``cpu_nms`` used
  ``>=``);
* ties in score go to the lower index;
* ``pixel_offset`` is 0 (torchvision, continuous coordinates) or 1 (the "+1"
  convention of py-faster-rcnn, the original Soft-NMS and MXNet R-FCN code);
* non-finite boxes or scores raise a :class:`ValueError`;
* quantized boxes and scores are dequantized first (the kept indices are those
  of the dequantized values, as torchvision's quantized ``nms``);
* under :func:`torch.autocast` boxes and scores are processed in float32 (the
  autocast kernels registered for ``torch.ops.scalekit.nms`` / ``soft_nms``);
  ``soft_nms`` returns its scores in the dtype of ``scores``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.fx.experimental.symbolic_shapes import guard_or_false

from scalekit import _ext
from scalekit.ops._checks import check_boxes, check_number, check_per_box, check_tensor, fx_leaf

__all__ = ["nms", "batched_nms", "grouped_nms", "soft_nms", "batched_soft_nms", "SoftNMS"]

SOFT_NMS_METHODS = ("linear", "gaussian", "hard")


def _dequantized(x):
    return x.dequantize() if isinstance(x, Tensor) and x.is_quantized else x


def _thresholds(iou_threshold, pixel_offset) -> tuple[float, float]:
    iou_threshold = check_number(iou_threshold, "iou_threshold")
    pixel_offset = check_number(pixel_offset, "pixel_offset", minimum=0.0, allow_inf=False)
    return iou_threshold, pixel_offset


def _nms_args(boxes, scores, iou_threshold, pixel_offset, idxs=None, idxs_name="idxs"):
    _ext.assert_has_ops()
    boxes, scores = _dequantized(boxes), _dequantized(scores)
    check_boxes(boxes)
    check_per_box(scores, boxes, "scores")
    if idxs is not None:
        check_per_box(idxs, boxes, idxs_name, integer=True)
        idxs = idxs.to(torch.int64)
    iou_threshold, pixel_offset = _thresholds(iou_threshold, pixel_offset)
    return boxes, scores, idxs, iou_threshold, pixel_offset


@fx_leaf
def nms(boxes: Tensor, scores: Tensor, iou_threshold: float, *, pixel_offset: float = 0.0) -> Tensor:
    """Greedy non-maximum suppression; a drop-in for :func:`torchvision.ops.nms`.

    Visits boxes in decreasing score and removes every later box whose IoU with
    a kept box is greater than ``iou_threshold``.

    Args:
        boxes: ``[N, 4]`` boxes ``(x1, y1, x2, y2)``, float16/bfloat16/float32/float64.
        scores: ``[N]`` scores, floating point.
        iou_threshold: boxes with IoU ``> iou_threshold`` are suppressed.
        pixel_offset: 0 (default) or 1 for the "+1" pixel convention.

    Returns:
        ``[K]`` int64 indices of the kept boxes, by decreasing score.

    Example:
        >>> import torch
        >>> from scalekit.ops import nms
        >>> boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0], [20.0, 20.0, 30.0, 30.0]])
        >>> scores = torch.tensor([0.9, 0.8, 0.7])
        >>> nms(boxes, scores, iou_threshold=0.5)
        tensor([0, 2])
    """
    boxes, scores, _, iou_threshold, pixel_offset = _nms_args(boxes, scores, iou_threshold, pixel_offset)
    return torch.ops.scalekit.nms(boxes, scores, None, iou_threshold, pixel_offset)


@fx_leaf
def batched_nms(
    boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float, *, pixel_offset: float = 0.0
) -> Tensor:
    """NMS within each category; a drop-in for :func:`torchvision.ops.batched_nms`.

    Boxes of different categories never suppress each other. The kernel compares
    categories directly, so unlike torchvision's coordinate-offset trick it stays
    right for any coordinates (torchvision lets classes suppress each other once
    coordinates go below -1).

    Args:
        boxes: ``[N, 4]`` float boxes.
        scores: ``[N]`` float scores.
        idxs: ``[N]`` integer category of each box.
        iou_threshold: boxes with IoU ``> iou_threshold`` are suppressed.
        pixel_offset: 0 (default) or 1.

    Returns:
        ``[K]`` int64 indices of the kept boxes, by decreasing score.

    Example:
        >>> import torch
        >>> from scalekit.ops import batched_nms
        >>> boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0], [1.0, 1.0, 11.0, 11.0]])
        >>> scores = torch.tensor([0.9, 0.8, 0.7])
        >>> batched_nms(boxes, scores, torch.tensor([0, 0, 1]), iou_threshold=0.5)
        tensor([0, 2])
    """
    if isinstance(boxes, Tensor) and guard_or_false(boxes.numel() == 0):
        # torchvision returns here too, whatever the other arguments: nothing to suppress. (A count
        # unknown while tracing, inside an exported detector, goes to the op, which handles empty input.)
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    boxes, scores, idxs, iou_threshold, pixel_offset = _nms_args(boxes, scores, iou_threshold, pixel_offset, idxs)
    return torch.ops.scalekit.nms(boxes, scores, idxs, iou_threshold, pixel_offset)


@fx_leaf
def grouped_nms(
    boxes: Tensor,
    scores: Tensor,
    labels: Tensor,
    groups: Tensor,
    iou_threshold: float,
    *,
    pixel_offset: float = 0.0,
) -> Tensor:
    """NMS per group of classes: R-FCN-3000's NMS per super-class (thesis §4.5.4).

    With thousands of fine-grained classes, running NMS per class repeats the
    same suppression for each class. R-FCN-3000 instead suppresses within each
    *super-class* cluster: boxes whose classes map to the same group compete,
    boxes of different groups never do. With every class its own group this is
    :func:`batched_nms` over ``labels``; with one group it is :func:`nms`.

    Args:
        boxes: ``[N, 4]`` float boxes.
        scores: ``[N]`` float scores.
        labels: ``[N]`` integer class of each box, in ``[0, C)``.
        groups: ``[C]`` integer group (super-class cluster) of each class.
        iou_threshold: boxes with IoU ``> iou_threshold`` are suppressed.
        pixel_offset: 0 (default) or 1.

    Returns:
        ``[K]`` int64 indices of the kept boxes, by decreasing score.

    Example:
        >>> import torch
        >>> from scalekit.ops import grouped_nms
        >>> boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0], [1.0, 1.0, 11.0, 11.0]])
        >>> scores = torch.tensor([0.9, 0.8, 0.7])
        >>> labels = torch.tensor([0, 1, 2])
        >>> groups = torch.tensor([0, 0, 1])  # classes 0 and 1 share a super-class
        >>> grouped_nms(boxes, scores, labels, groups, iou_threshold=0.5)
        tensor([0, 2])
    """
    check_tensor(groups, "groups")
    if groups.dim() != 1 or groups.is_floating_point() or groups.dtype == torch.bool:
        raise ValueError(f"groups must be a 1-D integer tensor [C], got {groups.dtype} {list(groups.shape)}")
    check_boxes(boxes)
    check_per_box(labels, boxes, "labels", integer=True)
    groups = groups.to(device=labels.device, dtype=torch.int64)
    if not torch.compiler.is_compiling() and labels.numel() > 0:
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= groups.numel():
            raise ValueError(
                f"labels must lie in [0, {groups.numel()}) (one entry of groups per class), "
                f"got values in [{lo}, {hi}]"
            )
    return batched_nms(boxes, scores, groups[labels], iou_threshold, pixel_offset=pixel_offset)


def _soft_nms_args(sigma, score_threshold, method):
    """The Soft-NMS settings, checked once for the functions and for :class:`SoftNMS`."""
    if not isinstance(method, str) or method not in SOFT_NMS_METHODS:
        raise ValueError(f"method must be one of {SOFT_NMS_METHODS}, got {method!r}")
    sigma = check_number(sigma, "sigma", minimum=0.0, strict=True, allow_inf=False)
    score_threshold = check_number(score_threshold, "score_threshold")
    return sigma, score_threshold


@fx_leaf
def soft_nms(
    boxes: Tensor,
    scores: Tensor,
    iou_threshold: float = 0.3,
    sigma: float = 0.5,
    score_threshold: float = 0.001,
    method: str = "linear",
    *,
    pixel_offset: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """Soft-NMS: decay the scores of overlapping boxes instead of removing them.

    Repeatedly selects the box with the highest current score and multiplies
    the score of every remaining box ``b`` by a weight that falls with
    ``iou = IoU(selected, b)``:

    * ``"linear"``: ``1 - iou`` if ``iou > iou_threshold``, else 1;
    * ``"gaussian"``: ``exp(-iou**2 / sigma)`` (``iou_threshold`` is unused);
    * ``"hard"``: the box is removed if ``iou > iou_threshold`` (greedy NMS).

    A box whose score is (or falls) below ``score_threshold`` is discarded.
    The weight scales a score's magnitude: a negative score ``s`` becomes
    ``s * (2 - weight)`` (it moves down by the same fraction of ``|s|``), so that
    a decay never raises a score and the selected scores are non-increasing
    for any scores (the paper's ``s * weight`` would raise a negative score).

    Defaults: ``iou_threshold=0.3`` and ``sigma=0.5`` are the paper's and the
    original code's; ``score_threshold=0.001`` is the original code's. SNIPER's
    test configuration merges pyramid levels with ``method="gaussian"``,
    ``sigma=0.55``. Two documented differences from the original Cython code:
    boxes that *start* below ``score_threshold`` are discarded too (the original
    always keeps the first box it selects), and score ties go to the lower index
    (the original's depended on its in-place swaps).

    The work is ``O(N log N)`` plus the pairs of boxes whose x-extents overlap
    (the boxes a selected box visits), not the paper's ``N**2`` selections x
    boxes: on ``N`` identical boxes it is ``N**2 / 2`` pair visits, as for the
    original code, and about 4x faster than it (``python -m benchmarks nms``).
    A long call on the CPU can be interrupted: Ctrl-C (SIGINT in Python's main
    thread) raises :class:`KeyboardInterrupt` within about 0.1 s (see
    :doc:`/conventions`).

    Args:
        boxes: ``[N, 4]`` boxes ``(x1, y1, x2, y2)``, float16/bfloat16/float32/float64.
        scores: ``[N]`` floating point scores.
        iou_threshold: IoU above which linear and hard decay apply.
        sigma: width of the Gaussian decay, ``> 0``.
        score_threshold: boxes whose score falls below it are discarded.
        method: ``"linear"``, ``"gaussian"`` or ``"hard"``.
        pixel_offset: 0 (default) or 1 for the original code's "+1" convention.

    Returns:
        ``(keep, kept_scores)``: ``[K]`` int64 indices in the order they were
        selected (non-increasing decayed score) and ``[K]`` their decayed
        scores, dtype of ``scores``.

    Example:
        >>> import torch
        >>> from scalekit.ops import soft_nms
        >>> boxes = torch.tensor([[6.0, 3, 8, 7], [3, 6, 9, 11], [3, 7, 10, 12], [1, 4, 13, 7]])
        >>> scores = torch.tensor([0.6, 0.9, 0.7, 0.2])
        >>> keep, kept_scores = soft_nms(boxes, scores, 0.3, score_threshold=0.01)
        >>> keep
        tensor([1, 0, 2, 3])
        >>> kept_scores
        tensor([0.9000, 0.6000, 0.2902, 0.2000])
    """
    boxes, scores, _, iou_threshold, pixel_offset = _nms_args(boxes, scores, iou_threshold, pixel_offset)
    sigma, score_threshold = _soft_nms_args(sigma, score_threshold, method)
    return _ext.call_op(
        torch.ops.scalekit.soft_nms, boxes, scores, None, iou_threshold, sigma, score_threshold, method, pixel_offset
    )


@fx_leaf
def batched_soft_nms(
    boxes: Tensor,
    scores: Tensor,
    idxs: Tensor,
    iou_threshold: float = 0.3,
    sigma: float = 0.5,
    score_threshold: float = 0.001,
    method: str = "linear",
    *,
    pixel_offset: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """Soft-NMS within each category: boxes of different categories never decay each other.

    Arguments and results as :func:`soft_nms`, plus ``idxs``, the ``[N]``
    integer category of each box. The selection order is global: the returned
    scores are non-increasing across all categories.

    Example:
        >>> import torch
        >>> from scalekit.ops import batched_soft_nms
        >>> boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0], [1.0, 1.0, 11.0, 11.0]])
        >>> scores = torch.tensor([0.9, 0.8, 0.7])
        >>> keep, kept_scores = batched_soft_nms(boxes, scores, torch.tensor([0, 0, 1]))
        >>> keep
        tensor([0, 2, 1])
        >>> kept_scores
        tensor([0.9000, 0.7000, 0.2555])
    """
    boxes, scores, idxs, iou_threshold, pixel_offset = _nms_args(boxes, scores, iou_threshold, pixel_offset, idxs)
    sigma, score_threshold = _soft_nms_args(sigma, score_threshold, method)
    return _ext.call_op(
        torch.ops.scalekit.soft_nms, boxes, scores, idxs, iou_threshold, sigma, score_threshold, method, pixel_offset
    )


class SoftNMS(nn.Module):
    """Soft-NMS as a module, holding its configuration: see :func:`soft_nms`.

    ``forward(boxes, scores, idxs=None)`` runs :func:`soft_nms`, or
    :func:`batched_soft_nms` when ``idxs`` is given.

    Example:
        >>> import torch
        >>> from scalekit.ops import SoftNMS
        >>> merge = SoftNMS(method="gaussian", sigma=0.55)  # SNIPER's test-time merge
        >>> merge
        SoftNMS(method='gaussian', iou_threshold=0.3, sigma=0.55, score_threshold=0.001, pixel_offset=0.0)
        >>> keep, kept_scores = merge(torch.tensor([[0.0, 0.0, 10.0, 10.0]]), torch.tensor([0.5]))
        >>> keep
        tensor([0])
    """

    def __init__(
        self,
        iou_threshold: float = 0.3,
        sigma: float = 0.5,
        score_threshold: float = 0.001,
        method: str = "linear",
        *,
        pixel_offset: float = 0.0,
    ) -> None:
        super().__init__()
        # Checked here, with the messages of soft_nms, rather than at the first call.
        self.iou_threshold, self.pixel_offset = _thresholds(iou_threshold, pixel_offset)
        self.sigma, self.score_threshold = _soft_nms_args(sigma, score_threshold, method)
        self.method = method

    def forward(self, boxes: Tensor, scores: Tensor, idxs: Tensor | None = None) -> tuple[Tensor, Tensor]:
        kwargs = dict(
            iou_threshold=self.iou_threshold,
            sigma=self.sigma,
            score_threshold=self.score_threshold,
            method=self.method,
            pixel_offset=self.pixel_offset,
        )
        if idxs is None:
            return soft_nms(boxes, scores, **kwargs)
        return batched_soft_nms(boxes, scores, idxs, **kwargs)

    def extra_repr(self) -> str:
        return (
            f"method={self.method!r}, iou_threshold={self.iou_threshold}, sigma={self.sigma}, "
            f"score_threshold={self.score_threshold}, pixel_offset={self.pixel_offset}"
        )
