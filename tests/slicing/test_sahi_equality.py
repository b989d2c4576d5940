"""With the same grid and NMS settings, sliced_detect returns SAHI's detections
(sahi.predict.get_sliced_prediction) on a deterministic fake detector.

Tolerance: the same detections in the same order (labels equal, scores equal in
float32, boxes within 1e-4 px: both sides hold float32 boxes). The scene is checked
to have no score ties and no same-label IoU within 1e-6 of the threshold, the two
places where the rules differ (SAHI breaks ties by coordinates and suppresses at
IoU >= threshold; scalekit's NMS, torchvision's rule, at IoU > threshold)."""

import numpy as np
import pytest
import torch

from scalekit.boxes import box_iou
from scalekit.scale import ScaleSpec
from scalekit.slicing import sliced_detect
from tests.slicing.scene import Scene, coordinate_image

sahi_predict = pytest.importorskip("sahi.predict", reason="SAHI is the reference (pip install sahi)")
from sahi.models.base import DetectionModel
from sahi.prediction import ObjectPrediction


class SahiScene(DetectionModel):
    """The scene as a SAHI detection model: SAHI gives it H x W x 3 uint8 numpy slices."""

    def __init__(self, scene: Scene):
        self.scene = scene
        super().__init__(confidence_threshold=0.5, load_at_init=False, device="cpu")

    def perform_inference(self, image: np.ndarray) -> None:
        self._original_predictions = self.scene(torch.from_numpy(image).permute(2, 0, 1))

    def _create_object_prediction_list_from_original_predictions(self, shift_amount_list=None,
                                                                 full_shape_list=None):
        boxes, scores, labels = self._original_predictions
        if shift_amount_list is not None and isinstance(shift_amount_list[0], int):  # as SAHI's own models do
            shift_amount_list = [shift_amount_list]
        if full_shape_list is not None and isinstance(full_shape_list[0], int):
            full_shape_list = [full_shape_list]
        shift = shift_amount_list[0] if shift_amount_list else [0, 0]
        full_shape = None if full_shape_list is None else full_shape_list[0]
        self._object_prediction_list_per_image = [[
            ObjectPrediction(bbox=b.tolist(), category_id=int(c), score=float(s), shift_amount=shift,
                             full_shape=full_shape) for b, s, c in zip(boxes, scores, labels)]]


def _sahi(scene, image, size, overlap, iou, agnostic, batch_size):
    result = sahi_predict.get_sliced_prediction(
        image.permute(1, 2, 0).numpy(), SahiScene(scene), slice_height=size, slice_width=size,
        overlap_height_ratio=overlap, overlap_width_ratio=overlap, perform_standard_pred=True,
        postprocess_type="NMS", postprocess_match_metric="IOU", postprocess_match_threshold=iou,
        postprocess_class_agnostic=agnostic, verbose=0, batch_size=batch_size, force_postprocess_type=True)
    preds = result.object_prediction_list
    return (torch.tensor([p.bbox.to_xyxy() for p in preds], dtype=torch.float32).reshape(-1, 4),
            torch.tensor([p.score.value for p in preds], dtype=torch.float32),
            torch.tensor([p.category.id for p in preds], dtype=torch.int64))


@pytest.mark.parametrize("height,width,size,overlap,iou,agnostic,seed", [
    (700, 1000, 256, 0.2, 0.5, False, 0),
    (700, 1000, 256, 0.2, 0.5, True, 5),
    (900, 650, 200, 0.35, 0.3, False, 2),
    (512, 1300, 320, 0.25, 0.45, True, 3),
])
def test_sliced_detect_equals_sahi(height, width, size, overlap, iou, agnostic, seed):
    image = coordinate_image(height, width)
    scene = Scene(height, width, n=40, seed=seed)

    raw = []  # every detection before merging: the preconditions of the comparison

    def keep_all(boxes, scores, labels):
        raw.append((boxes, scores, labels))
        return torch.arange(len(boxes))

    sliced_detect(scene, image, slice_size=size, overlap=overlap, full_image=ScaleSpec.fixed(1.0),
                  merge=keep_all, score_threshold=0.0)
    boxes, scores, labels = raw[0]
    assert len(torch.unique(scores)) == len(scores), "score ties: SAHI breaks them another way"
    same = labels[:, None] == labels[None, :] if not agnostic else torch.ones(len(labels), len(labels), dtype=torch.bool)
    assert not ((box_iou(boxes, boxes) - iou).abs() < 1e-6)[same].any(), "an IoU at the threshold"
    assert len(boxes) > 60  # slices overlap: the scene's objects are found several times

    ours = sliced_detect(scene, image, slice_size=size, overlap=overlap, full_image=ScaleSpec.fixed(1.0),
                         batch_size=3, merge="nms", iou_threshold=iou, class_agnostic=agnostic,
                         score_threshold=0.0)
    theirs = _sahi(scene, image, size, overlap, iou, agnostic, batch_size=2)
    assert len(theirs[0]) < len(boxes)  # the merge did remove duplicates
    assert ours["labels"].tolist() == theirs[2].tolist()
    assert torch.equal(ours["scores"], theirs[1])
    torch.testing.assert_close(ours["boxes"], theirs[0], atol=1e-4, rtol=0)


def test_both_run_the_same_windows():
    height, width = 600, 900
    image, scene = coordinate_image(height, width), Scene(height, width)
    sliced_detect(scene, image, slice_size=256, overlap=0.2, full_image=ScaleSpec.fixed(1.0))
    ours, scene.calls = scene.calls, []
    _sahi(scene, image, 256, 0.2, 0.5, False, batch_size=1)
    assert sorted(ours) == sorted(scene.calls)
    assert (0, 0, height, width) in ours  # the full-image pass


def _ios(boxes):
    inter = box_iou(boxes, boxes)  # from IoU and areas: inter = iou * union, union = a + b - inter
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    inter = inter * (area[:, None] + area[None, :]) / (1 + inter)
    return inter / torch.minimum(area[:, None], area[None, :])


@pytest.mark.parametrize("kind,metric,agnostic,seed", [
    ("greedy_nmm", "ios", False, 0),  # SAHI's get_sliced_prediction default
    ("greedy_nmm", "iou", True, 5),
    ("nmm", "ios", True, 2),
    ("nmm", "iou", False, 3),
])
def test_sliced_merging_equals_sahi(kind, metric, agnostic, seed):
    """The merges (union box, highest score) as SAHI's GREEDYNMM / NMM postprocess
    gives them; order aside (SAHI lists per-class results class by class)."""
    height, width, size, overlap, threshold = 700, 1000, 256, 0.2, 0.5
    image, scene = coordinate_image(height, width), Scene(height, width, n=40, seed=seed)
    raw = []
    sliced_detect(scene, image, slice_size=size, overlap=overlap, full_image=ScaleSpec.fixed(1.0),
                  merge=lambda b, s, lab: raw.append((b, s, lab)) or torch.arange(len(b)), score_threshold=0.0)
    boxes, scores, labels = raw[0]
    assert len(torch.unique(scores)) == len(scores), "score ties: SAHI breaks them another way"
    match = _ios(boxes.double()) if metric == "ios" else box_iou(boxes.double(), boxes.double())
    assert not ((match - threshold).abs() < 1e-6).any(), "a match at the threshold"

    ours = sliced_detect(scene, image, slice_size=size, overlap=overlap, full_image=ScaleSpec.fixed(1.0),
                         merge=kind, match_metric=metric, iou_threshold=threshold, class_agnostic=agnostic,
                         score_threshold=0.0)
    result = sahi_predict.get_sliced_prediction(
        image.permute(1, 2, 0).numpy(), SahiScene(scene), slice_height=size, slice_width=size,
        overlap_height_ratio=overlap, overlap_width_ratio=overlap, perform_standard_pred=True,
        postprocess_type=kind.upper().replace("_", ""), postprocess_match_metric=metric.upper(),
        postprocess_match_threshold=threshold, postprocess_class_agnostic=agnostic, verbose=0,
        force_postprocess_type=True)
    theirs = sorted(((p.score.value, p.category.id, p.bbox.to_xyxy()) for p in result.object_prediction_list),
                    key=lambda t: -t[0])
    assert len(theirs) < len(boxes)  # boxes were merged
    assert [round(t[0], 6) for t in theirs] == [round(v, 6) for v in ours["scores"].tolist()]
    assert [t[1] for t in theirs] == ours["labels"].tolist()
    torch.testing.assert_close(ours["boxes"], torch.tensor([t[2] for t in theirs], dtype=torch.float32),
                               atol=1e-4, rtol=0)
