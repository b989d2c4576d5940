"""sliced_detect: what reaches the detector (sizes, batches, live crops), boxes back in
image pixels, the merges, the image kinds and progress."""

import gc
import warnings

import pytest
import torch

from scalekit.scale import ScaleSpec
from scalekit.slicing import MergeSettings, merge_detections, slice_grid, sliced_detect
from tests.slicing.scene import Scene, coordinate_image


def test_a_torchvision_detector_gets_every_slice_at_the_slice_size_in_batches():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, num_classes=3).eval()
    seen = []
    model.backbone.register_forward_pre_hook(lambda m, x: seen.append(tuple(x[0].shape)))
    image = torch.rand(3, 300, 400)
    dets = sliced_detect(model, image, slice_size=128, overlap=0.25, batch_size=3)
    n = len(slice_grid(300, 400, 128, 0.25))  # 3 rows x 4 columns
    assert n == 12
    # the full-image pass first (longer side to 128: 96 x 128), then the slices 3 at a time at 128 x 128,
    # not torchvision's min_size of 320
    assert seen == [(1, 3, 96, 128)] + [(3, 3, 128, 128)] * 4
    assert model.transform.min_size == (320,)  # the model's own resizing is back after the call
    assert dets["boxes"].dtype == torch.float32 and dets["labels"].dtype == torch.int64
    assert ((dets["boxes"] >= 0) & (dets["boxes"] <= torch.tensor([400.0, 300, 400, 300]))).all()


def test_a_large_image_streams_batch_by_batch():
    """4000 x 6000, 512-px slices: the detector never sees more than batch_size slices, and no
    more than batch_size crops exist at any call (counted among the live tensors)."""
    batch_size = 4
    image = torch.zeros(3, 4000, 6000, dtype=torch.uint8)
    windows = slice_grid(4000, 6000, 512, 0.2)
    assert len(windows) == 150
    live_at_call, calls = [], []

    def live_crops():  # plain tensors only: fake or symbolic ones left by other tests have no real shape
        return sum(1 for o in gc.get_objects() if type(o) is torch.Tensor and o.device.type == "cpu"
                   and o.is_floating_point() and tuple(o.shape) == (3, 512, 512))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        before = live_crops()

    def detector(crop):
        calls.append(tuple(crop.shape))
        if len(calls) in (1, 2, 3, 4, 5, 75, 150):  # a scan of every object is slow: a few calls suffice
            with warnings.catch_warnings():  # isinstance on some modules' lazy attributes warns
                warnings.simplefilter("ignore")
                live_at_call.append(live_crops() - before)
        return torch.tensor([[10.0, 20, 30, 40]]), torch.tensor([0.9]), torch.tensor([1])

    dets = sliced_detect(detector, image, slice_size=512, batch_size=batch_size, full_image=False,
                         iou_threshold=1.0)
    assert calls == [(3, 512, 512)] * 150
    assert live_at_call == [4, 4, 4, 4, 4, 4, 2]  # a batch's crops (the last batch has 2), never all 150
    # every slice's box, shifted by its window: nothing merges at IoU 1.0 (> 1.0 never holds)
    expected = windows[:, :2].repeat(1, 2).float() + torch.tensor([10.0, 20, 30, 40])
    assert sorted(dets["boxes"].tolist()) == sorted(expected.tolist())


def test_boxes_come_back_in_image_pixels_and_clipped():
    def detector(image):  # one box from the slice's top-left corner, one leaving it to the right
        w = image.shape[-1]
        return torch.tensor([[1.0, 2, 11, 12], [w - 5.0, 0, w + 50, 10]]), torch.tensor([0.9, 0.8]), torch.tensor([1, 2])

    dets = sliced_detect(detector, torch.zeros(3, 100, 150), slice_size=100, overlap=0.0, full_image=False,
                         merge=lambda b, s, lab: torch.arange(len(b)))
    assert dets["boxes"].tolist() == [[1.0, 2, 11, 12], [95, 0, 150, 10], [51, 2, 61, 12], [145, 0, 150, 10]]


def test_the_full_image_pass_maps_its_boxes_back_through_its_resize():
    sizes = []

    def detector(image):  # the whole image's box, found at whatever size it comes
        sizes.append(tuple(image.shape[-2:]))
        h, w = image.shape[-2:]
        return torch.tensor([[0.0, 0, w, h]]), torch.tensor([0.9]), torch.tensor([1])

    dets = sliced_detect(detector, torch.zeros(3, 400, 1000), slice_size=200, overlap=0.0,
                         full_image=ScaleSpec.fixed(0.1), merge=lambda b, s, lab: s > 0)
    assert sizes[0] == (40, 100) and sizes[1:] == [(200, 200)] * 10
    assert dets["boxes"][0].tolist() == [0.0, 0, 1000, 400]
    # one slice (the image fits): no full-image pass, as SAHI
    sizes.clear()
    sliced_detect(detector, torch.zeros(3, 100, 100), slice_size=200)
    assert sizes == [(100, 100)]


def test_uint8_pil_and_path_give_the_same_detections(tmp_path):
    from PIL import Image

    scene = Scene(300, 500, n=15, seed=3)
    image = coordinate_image(300, 500)
    kwargs = dict(slice_size=128, overlap=0.2, full_image=ScaleSpec.fixed(1.0))
    ref = sliced_detect(scene, image, **kwargs)
    pil = Image.fromarray(image.permute(1, 2, 0).numpy())
    pil.save(tmp_path / "scene.png")
    for same in (image.float() / 255, pil, tmp_path / "scene.png", str(tmp_path / "scene.png")):
        out = sliced_detect(scene, same, **kwargs)
        assert all(torch.equal(out[k], ref[k]) for k in ref)
    assert len(ref["boxes"]) > 10


def test_the_detector_cannot_change_the_image():
    image = coordinate_image(200, 300).float() / 255
    before = image.clone()

    def vandal(crop):
        crop.zero_()
        return torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64)

    sliced_detect(vandal, image, slice_size=128, full_image=ScaleSpec.fixed(1.0))
    assert torch.equal(image, before)


def test_merges():
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11], [1, 1, 11, 11], [50, 50, 60, 60]])
    scores, labels = torch.tensor([0.9, 0.8, 0.7, 0.6]), torch.tensor([1, 1, 2, 1])
    per_class = merge_detections(boxes, scores, labels, "nms")
    assert per_class["scores"].tolist() == pytest.approx([0.9, 0.7, 0.6])
    agnostic = merge_detections(boxes, scores, labels, "nms", settings=MergeSettings(class_agnostic=True))
    assert agnostic["scores"].tolist() == pytest.approx([0.9, 0.6])
    soft = merge_detections(boxes, scores, labels, "soft_nms", settings=MergeSettings(sigma=0.5))
    iou = (81 / 119)
    assert soft["scores"].tolist() == pytest.approx([0.9, 0.7, 0.6, 0.8 * torch.exp(torch.tensor(-iou ** 2 / 0.5)).item()])
    # a callable returning new detections: the union of everything, max score
    union = merge_detections(boxes, scores, labels, lambda b, s, lab: (
        torch.cat([b[:, :2].min(0).values, b[:, 2:].max(0).values])[None], s.max()[None], lab[:1]))
    assert union["boxes"].tolist() == [[0.0, 0, 60, 60]] and union["scores"].tolist() == pytest.approx([0.9])


def test_max_detections_and_score_threshold():
    scene = Scene(300, 400, n=30, seed=7)
    image = coordinate_image(300, 400)
    every = sliced_detect(scene, image, slice_size=128, score_threshold=0.0)
    top = sliced_detect(scene, image, slice_size=128, max_detections=5, score_threshold=0.0)
    assert top["scores"].tolist() == every["scores"][:5].tolist()
    high = sliced_detect(scene, image, slice_size=128, score_threshold=0.7)
    assert (high["scores"] >= 0.7).all() and len(high["scores"]) < len(every["scores"])


def test_progress_counts_batches(capsys):
    sliced_detect(lambda im: (torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64)),
                  torch.zeros(3, 300, 300), slice_size=100, overlap=0.0, batch_size=4, progress=True)
    err = capsys.readouterr().err
    assert "sliced_detect" in err and "3/3" in err  # 9 slices, 4 per batch


@pytest.mark.parametrize("kwargs,error,words", [
    (dict(slice_size=0), ValueError, "slice_size must be >= 1"),
    (dict(slice_size=(64, -1)), ValueError, "slice_size[1] (width) must be >= 1"),
    (dict(slice_size=64.5), TypeError, "slice_size must be an integer"),
    (dict(overlap=1.0), ValueError, "overlap must be in [0, 1)"),
    (dict(overlap=-0.1), ValueError, "overlap must be in [0, 1)"),
    (dict(overlap=float("nan")), ValueError, "overlap must be a finite number"),
    (dict(overlap="0.2"), TypeError, "overlap must be a number"),
    (dict(batch_size=0), ValueError, "batch_size must be >= 1"),
    (dict(merge="greedy"), ValueError, "merge must be one of ['greedy_nmm', 'nmm', 'nms', 'soft_nms']"),
    (dict(merge="nmm", match_metric="giou"), ValueError, "match_metric must be 'iou' or 'ios'"),
    (dict(merge=3), TypeError, "merge must be one of"),
    (dict(iou_threshold=1.5), ValueError, "iou_threshold must be in [0, 1]"),
    (dict(sigma=0.0), ValueError, "sigma"),
    (dict(soft_nms_method="box"), ValueError, "soft_nms_method must be one of"),
    (dict(full_image=2), TypeError, "full_image must be True, False or a scalekit.scale.ScaleSpec"),
    (dict(max_detections=0), ValueError, "max_detections must be >= 1"),
    (dict(class_agnostic=1), TypeError, "class_agnostic must be True or False"),
    (dict(progress="yes"), TypeError, "progress must be True or False"),
])
def test_bad_arguments_are_named_before_the_detector_runs(kwargs, error, words):
    ran = []
    with pytest.raises(error) as info:
        sliced_detect(lambda im: ran.append(1), torch.zeros(3, 64, 64), **kwargs)
    assert words in str(info.value)
    assert ran == []


def test_bad_images_and_bad_detector_outputs():
    ok = (torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"image must be one \[C, H, W\] image, got a batch"):
        sliced_detect(lambda im: ok, torch.zeros(2, 3, 64, 64))
    with pytest.raises(TypeError, match="image must be a float tensor in \\[0, 1\\] or a uint8"):
        sliced_detect(lambda im: ok, torch.zeros(3, 64, 64, dtype=torch.int32))
    with pytest.raises(FileNotFoundError, match="no such image file"):
        sliced_detect(lambda im: ok, "/nonexistent.png")
    with pytest.raises(ValueError, match=r"slice \(0, 0\): the detector returned 1 detection\(s\) with non-finite"):
        sliced_detect(lambda im: (torch.tensor([[0.0, 0, float("nan"), 1]]), torch.ones(1), torch.ones(1)),
                      torch.zeros(3, 64, 64))
    with pytest.raises(ValueError, match="merge returned indices in \\[5, 5\\], outside \\[0, 1\\)"):
        sliced_detect(lambda im: (torch.tensor([[0.0, 0, 1, 1]]), torch.ones(1), torch.ones(1)),
                      torch.zeros(3, 64, 64), merge=lambda b, s, lab: torch.tensor([5]))
    with pytest.raises(TypeError, match="merge must return keep indices"):
        sliced_detect(lambda im: ok, torch.zeros(3, 64, 64), merge=lambda b, s, lab: torch.zeros(0))


def test_the_full_image_pass_sees_the_resized_image():
    from scalekit.scale import resize_image

    image = coordinate_image(300, 700)
    shown = []

    def detector(im):
        shown.append(im.clone())
        return torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64)

    sliced_detect(detector, image, slice_size=256)  # longer side to 256: factor 256 / 700
    expected, _, _ = resize_image(image.float() / 255, 256 / 700)
    assert shown[0].shape == (3, 110, 256)
    torch.testing.assert_close(shown[0], expected, rtol=0, atol=1e-6)
