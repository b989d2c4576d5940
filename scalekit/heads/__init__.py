"""Detection heads that plug onto any backbone feature map and any proposals:
R-FCN (SNIP, SNIPER) and R-FCN-3000's decoupled objectness x classification
head, each with its loss and post-processing, plus super-class discovery.

Depends on :mod:`scalekit.ops` (position-sensitive pooling, NMS) and
:mod:`scalekit.boxes` (matching and box coding).

The heads' contract (every head here, and what
:class:`scalekit.detection.TorchvisionRoIHeads` relies on):

* ``outputs = head(features, proposals, image_sizes=None)``: ``features``
  ``[N, C_in, H, W]``, ``proposals`` a list of N ``[L_i, 4]`` boxes,
  ``image_sizes`` ``(height, width)`` per image (optional: with it the
  spatial scale is checked, or inferred when the head's is ``None``).
  ``outputs`` always holds

  - ``"rois"`` ``[R, 5]``: the RoIs the head built (batch index first), which
    ``loss`` and ``postprocess`` reuse;
  - ``"det_logits"`` ``[R, 1 + D]``: detection logits, background first
    (``D = C`` classes for :class:`RFCNHead`, ``D = K`` super-classes for
    :class:`DecoupledHead`); ``1 - softmax[:, 0]`` is the objectness;
  - ``"box_deltas"`` ``[R, 4]``: class-agnostic box regression;

  and a head may add its own (:class:`DecoupledHead`: ``"class_logits"``
  ``[R, C]``, fine-grained, no background).
* ``head.loss(outputs, targets)`` -> dict of scalar losses; ``targets`` one
  torchvision dict per image (``"boxes"``, ``"labels"`` in ``1..C``, optional
  ``"ignore_boxes"``).
* ``head.postprocess(outputs, image_sizes)`` -> one ``{"boxes", "scores",
  "labels"}`` per image of ``image_sizes`` (boxes clipped to it);
  ``head.postprocess_objectness(outputs, image_sizes)`` the same,
  class-agnostic (label 1).
* ``head.class_scores(outputs)`` ``[R, C]`` and ``head.objectness(outputs)``
  ``[R]``.
"""

from scalekit.heads.decoupled import DecoupledHead
from scalekit.heads.rfcn import RFCNHead
from scalekit.heads.superclasses import class_mean_features, discover_superclasses

__all__ = ["RFCNHead", "DecoupledHead", "discover_superclasses", "class_mean_features"]
