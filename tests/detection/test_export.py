"""A torchvision Faster R-CNN with an R-FCN-3000 head and a deformable ResNet stage,
exported to ONNX and run in ONNX Runtime: the same detections as the model."""

import pytest
import torch

ort = pytest.importorskip("onnxruntime", reason="ONNX Runtime is the peer the export runs in")
pytest.importorskip("onnxscript", reason="the exporter's onnxscript translates the ops")

import torchvision  # noqa: E402
from torchvision.models._utils import IntermediateLayerGetter  # noqa: E402
from torchvision.models.detection.anchor_utils import AnchorGenerator  # noqa: E402

from scalekit.detection import deformable_resnet, export_detector, faster_rcnn_with_head  # noqa: E402
from scalekit.heads import DecoupledHead  # noqa: E402


def detector():
    torch.manual_seed(0)
    resnet = deformable_resnet(torchvision.models.resnet18(weights=None), stages=("layer3",), modulated=True)
    backbone = IntermediateLayerGetter(resnet, {"layer3": "0"})
    backbone.out_channels = 256
    with torch.no_grad():  # offsets start at zero: make them matter
        for m in backbone.modules():
            if type(m).__name__ == "DeformConv2dPack":
                for p in m.parameters():
                    if p is not m.weight:
                        p.normal_(0, 0.3)
    head = DecoupledHead(256, num_classes=6, superclass_of=torch.tensor([0, 0, 1, 1, 2, 2]), pool_size=3,
                         spatial_scale=1 / 16, mid_channels=32, fine_channels=32)
    return faster_rcnn_with_head(backbone, head, min_size=160, max_size=160, box_score_thresh=0.0,
                                 rpn_anchor_generator=AnchorGenerator(((32, 64),), ((0.5, 1.0, 2.0),))).eval()


def test_detector_exports_and_matches_in_onnx_runtime():
    model = detector()
    image = torch.rand(3, 160, 160, generator=torch.Generator().manual_seed(1))
    program = export_detector(model, image)
    ops_used = {n.op_type for n in program.model_proto.graph.node}
    session = ort.InferenceSession(program.model_proto.SerializeToString(), providers=["CPUExecutionProvider"])
    boxes, scores, labels = (torch.from_numpy(o) for o in session.run(None, {session.get_inputs()[0].name:
                                                                             image.numpy()}))
    with torch.no_grad():
        ref = model([image])[0]
    assert len(ref["boxes"]) > 0 and len(labels) == len(ref["labels"])
    torch.testing.assert_close(scores, ref["scores"], rtol=1e-4, atol=1e-5)
    # The same detections, matched one to one (scores a float rounding apart may come in either
    # order, and those tying with the last one kept may be cut either way at detections_per_image).
    # ONNX Runtime's DeformConv, RoiAlign and box decoding (exp) move a corner by at most a few
    # thousandths of a pixel here.
    sure = ref["scores"] > ref["scores"].min() + 1e-4
    assert sure.sum() >= len(sure) // 2
    corner = (boxes[:, None, :] - ref["boxes"][None, sure, :]).abs().amax(2)
    same = (corner < 1e-2) & (labels[:, None] == ref["labels"][None, sure]) \
        & ((scores[:, None] - ref["scores"][None, sure]).abs() < 1e-5)
    assert same.any(0).all(), f"{int((~same.any(0)).sum())} reference detections have no ONNX twin"
    # No custom domain: every node is a standard ONNX operator or a function built from them.
    assert {"DeformConv", "NonMaxSuppression"} <= ops_used | {n.op_type for f in program.model_proto.functions
                                                              for n in f.node}


def test_torchvision_rpn_is_restored_after_export():
    from torchvision.models.detection import rpn
    before = rpn.box_ops.batched_nms
    with pytest.raises(ValueError, match="image must be a float"):
        export_detector(detector(), torch.zeros(3, 8, 8, dtype=torch.uint8))
    assert rpn.box_ops.batched_nms is before
