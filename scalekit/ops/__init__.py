"""Compiled ops (``torch.ops.scalekit``) with thin, checked Python wrappers.

Where torchvision has the same op, the signature and results match it argument
for argument.
"""

from scalekit import _ext
from scalekit.ops._nms import SoftNMS, batched_nms, batched_soft_nms, grouped_nms, nms, soft_nms

if _ext.has_ops():
    from scalekit.ops import _fake

    _fake.register()

__all__ = ["nms", "batched_nms", "grouped_nms", "soft_nms", "batched_soft_nms", "SoftNMS"]
