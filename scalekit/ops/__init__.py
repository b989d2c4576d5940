"""Compiled ops (``torch.ops.scalekit``) with thin, checked Python wrappers.

Where torchvision has the same op, the signature and results match it argument
for argument (differences, where torchvision is wrong, are documented per op).
Every op has autocast kernels (``AutocastCPU``, ``AutocastCUDA``) that compute
in float32 and return the dtype of the features, and every wrapper is a leaf
of :func:`torch.fx.symbolic_trace`.
"""

from scalekit import _ext
from scalekit.ops._deform_conv import DeformConv2d, DeformConv2dPack, deform_conv2d
from scalekit.ops._merge import greedy_nmm, nmm
from scalekit.ops._onnx import ONNX_OPSET, export_onnx, onnx_translation_table
from scalekit.ops._nms import SoftNMS, batched_nms, batched_soft_nms, grouped_nms, nms, soft_nms
from scalekit.ops._ps_roi import (
    DeformPSRoIPool,
    DeformPSRoIPoolPack,
    PSRoIAlign,
    PSRoIPool,
    deform_ps_roi_pool,
    ps_roi_align,
    ps_roi_pool,
)

if _ext.has_ops():
    from scalekit.ops import _registrations

    _registrations.register()

__all__ = [
    "nms", "batched_nms", "grouped_nms", "soft_nms", "batched_soft_nms", "SoftNMS", "greedy_nmm", "nmm",
    "ps_roi_pool", "ps_roi_align", "deform_ps_roi_pool", "PSRoIPool", "PSRoIAlign", "DeformPSRoIPool",
    "DeformPSRoIPoolPack", "deform_conv2d", "DeformConv2d", "DeformConv2dPack",
    "export_onnx", "onnx_translation_table", "ONNX_OPSET",
]
