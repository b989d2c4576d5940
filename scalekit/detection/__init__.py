"""The seam between scalekit's blocks and real detectors (torchvision first).

The only layer that knows torchvision's detection internals:

* :func:`keep_input_size` — the detector's transform stops resizing, so that
  512x512 chips and pyramid levels reach the backbone at their own size;
* :func:`honour_ignore_boxes` — a ``FasterRCNN`` whose RPN and RoI heads leave
  ``target["ignore_boxes"]`` out of training (SNIP, thesis §2.6.1), and whose
  transform resizes them with the boxes;
* :class:`TorchvisionRoIHeads` / :func:`faster_rcnn_with_head` — R-FCN and
  R-FCN-3000 heads (:mod:`scalekit.heads`) as a ``FasterRCNN``'s ``roi_heads``;
* :func:`deformable_resnet` — the 3x3 convolutions of chosen ResNet stages
  made deformable, the same function at initialisation;
* :func:`export_detector` — the whole detector (scalekit heads, ops and
  deformable stages included) as one ONNX model that ONNX Runtime runs;
* torchvision detectors run by :class:`scalekit.scale.Pyramid` with every
  level at its own size (registered on import).

Targets everywhere are torchvision's dicts plus one key:
``{"boxes", "labels", "ignore_boxes"}``.
"""

from scalekit.detection.backbones import deformable_resnet
from scalekit.detection.export import DetectionOutputs, export_detector
from scalekit.detection.ignore import honour_ignore_boxes
from scalekit.detection.pyramid import torchvision_level_detector
from scalekit.detection.roi_heads import TorchvisionRoIHeads, faster_rcnn_with_head
from scalekit.detection.transform import keep_input_size

__all__ = ["keep_input_size", "honour_ignore_boxes", "TorchvisionRoIHeads", "faster_rcnn_with_head",
           "deformable_resnet", "torchvision_level_detector", "export_detector", "DetectionOutputs"]
