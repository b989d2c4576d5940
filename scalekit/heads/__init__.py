"""Detection heads that plug onto any backbone feature map and any proposals:
R-FCN (SNIP, SNIPER) and R-FCN-3000's decoupled objectness x classification
head, each with its loss and post-processing, plus super-class discovery.

Depends on :mod:`scalekit.ops` (position-sensitive pooling, NMS) and
:mod:`scalekit.boxes` (matching and box coding). Both heads share one
contract: ``forward(features, proposals)`` returns a dict, ``loss(outputs,
proposals, targets)`` and ``postprocess(outputs, proposals, image_sizes)``.
"""

from scalekit.heads.decoupled import DecoupledHead
from scalekit.heads.rfcn import RFCNHead
from scalekit.heads.superclasses import class_mean_features, discover_superclasses

__all__ = ["RFCNHead", "DecoupledHead", "discover_superclasses", "class_mean_features"]
