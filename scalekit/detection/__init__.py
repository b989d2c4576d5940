"""The seam between scalekit's blocks and real detectors (torchvision first).

The only layer that knows torchvision's detection internals:

* :func:`keep_input_size` — the detector's transform stops resizing, so that
  512x512 chips and pyramid levels reach the backbone at their own size;
* :func:`honour_ignore_boxes` — a ``FasterRCNN`` whose RPN and RoI heads leave
  ``target["ignore_boxes"]`` out of training (SNIP, thesis §2.6.1), and whose
  transform resizes them with the boxes;
* :class:`TorchvisionRoIHeads` / :func:`faster_rcnn_with_head` — R-FCN and
  R-FCN-3000 heads (:mod:`scalekit.heads`) as a ``FasterRCNN``'s ``roi_heads``;
* :func:`objectness_detections` / :func:`proposal_detections` / :func:`add_class` —
  R-FCN-3000's class-agnostic detections, its detections with the RPN's scores
  as objectness (thesis Table 4.5), and new classes from classification
  images, for such a model;
* :func:`deformable_resnet` — the 3x3 convolutions of chosen ResNet stages
  made deformable, the same function at initialisation;
* :class:`RPNOnly` / :func:`mine_proposals` — SNIPER's short RPN-only run
  and its proposals at every level, the input of negative chips;
* :func:`export_detector` — the whole detector (scalekit heads, ops and
  deformable stages included) as one ONNX model that ONNX Runtime runs;
* :class:`FocusDetector` — AutoFocus's focus head on a detector's stride-16
  feature map, trained with it (``"loss_focus"``) and returning focus maps
  with the detections, which :class:`scalekit.autofocus.AutoFocus` runs
  (found by its class, as ``Pyramid`` finds torchvision's detectors);
* :func:`torchvision_level_detector` — torchvision detectors run by
  :class:`scalekit.scale.Pyramid` with every level at its own size
  (``Pyramid`` finds it by the model's class; nothing is registered on import).

It needs torchvision, installed with scalekit's ``detection`` extra
(``pip install 'torch-scalekit[detection]'``); the layers below it (ops, boxes,
scale, chips, heads, evaluation, datasets) import without it.

Targets everywhere are torchvision's dicts plus one key:
``{"boxes", "labels", "ignore_boxes"}``.
"""

try:
    import torchvision  # noqa: F401
except Exception as exc:  # missing, or built for another torch ("operator torchvision::nms does not exist")
    raise ImportError(
        "scalekit.detection needs torchvision, which could not be imported "
        f"({type(exc).__name__}: {exc}). Install scalekit's 'detection' extra: "
        "pip install 'torch-scalekit[detection]' (or a torchvision release built for your torch; "
        "the other layers of scalekit work without it)"
    ) from exc

from scalekit.detection.backbones import deformable_resnet
from scalekit.detection.decoupled import add_class, image_features, objectness_detections, proposal_detections
from scalekit.detection.export import DetectionOutputs, export_detector
from scalekit.detection.focus import FocusDetector, focus_adapter
from scalekit.detection.ignore import honour_ignore_boxes
from scalekit.detection.mining import RPNOnly, mine_proposals
from scalekit.detection.pyramid import torchvision_adapter, torchvision_level_detector
from scalekit.detection.roi_heads import TorchvisionRoIHeads, faster_rcnn_with_head
from scalekit.detection.transform import keep_input_size

__all__ = ["keep_input_size", "honour_ignore_boxes", "TorchvisionRoIHeads", "faster_rcnn_with_head",
           "deformable_resnet", "torchvision_level_detector", "torchvision_adapter",
           "export_detector", "DetectionOutputs", "RPNOnly", "mine_proposals",
           "objectness_detections", "proposal_detections", "add_class", "image_features", "FocusDetector", "focus_adapter"]
