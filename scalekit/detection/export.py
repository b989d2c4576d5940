"""A torchvision detector with scalekit's heads, ops or deformable backbone as one
ONNX model (the default exporter, ``dynamo=True``, opset 19) that ONNX Runtime runs.

Two things stand between a torchvision ``FasterRCNN`` and ``torch.export``: its
RPN's ``batched_nms`` branches on the number of boxes (``boxes.numel() == 0``,
which is unknown while tracing), and torchvision's ``nms`` has no translation
in the exporter. :func:`export_detector` swaps the RPN's ``batched_nms`` for
scalekit's (the same function, an op with a translation) for the duration of
the export only, and exports with every scalekit op translated
(:func:`scalekit.ops.onnx_translation_table`).
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor, nn

from scalekit.ops import batched_nms, export_onnx

__all__ = ["export_detector", "DetectionOutputs"]


class DetectionOutputs(nn.Module):
    """``image [3, H, W] -> (boxes [K, 4], scores [K], labels [K])`` of one image: a
    torchvision detector's ``model([image])[0]`` as tensors, which ONNX outputs must be."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        out = self.model([image])[0]
        return out["boxes"], out["scores"], out["labels"]


@contextlib.contextmanager
def _rpn_nms_exportable():
    """torchvision's RPN calls ``box_ops.batched_nms`` of its own module: scalekit's
    for the duration of the block (restored after, also on error)."""
    from torchvision.models.detection import rpn

    original = rpn.box_ops.batched_nms
    rpn.box_ops.batched_nms = batched_nms
    try:
        yield
    finally:
        rpn.box_ops.batched_nms = original


def export_detector(model: nn.Module, image: Tensor, path=None, **kwargs):
    """Export a torchvision detector for one image of ``image``'s size to ONNX.

    The exported graph takes ``image`` (``[3, H, W]`` float in [0, 1], the size
    fixed at export unless ``dynamic_shapes`` says otherwise) and returns
    ``(boxes [K, 4], scores [K], labels [K])`` as ``model.eval()([image])[0]``
    does. ``model`` is put in eval mode. Keyword arguments go to
    :func:`scalekit.ops.export_onnx` (``torch.onnx.export``).

    Returns:
        the ``torch.onnx.ONNXProgram`` (``.save(path)``, ``.model_proto``).

    Example:
        >>> import torch
        >>> from torchvision.models.detection.anchor_utils import AnchorGenerator
        >>> from scalekit.detection import export_detector, faster_rcnn_with_head
        >>> from scalekit.heads import DecoupledHead
        >>> backbone = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, stride=8, padding=1), torch.nn.ReLU())
        >>> backbone.out_channels = 16
        >>> head = DecoupledHead(16, num_classes=5, pool_size=3, spatial_scale=1 / 8, mid_channels=16,
        ...                      fine_channels=16)
        >>> model = faster_rcnn_with_head(backbone, head, min_size=64, max_size=64,
        ...                               rpn_anchor_generator=AnchorGenerator(((32,),), ((1.0,),)))
        >>> program = export_detector(model, torch.rand(3, 64, 64))
        >>> len(program.model.graph.outputs)  # boxes, scores, labels
        3
    """
    if not isinstance(image, Tensor) or image.ndim != 3 or not image.is_floating_point():
        raise ValueError(f"image must be a float [3, H, W] tensor, got "
                         f"{type(image).__name__ if not isinstance(image, Tensor) else (image.dtype, list(image.shape))}")
    wrapped = DetectionOutputs(model.eval()).eval()
    with _rpn_nms_exportable(), torch.no_grad():
        return export_onnx(wrapped, (image,), path, **kwargs)
