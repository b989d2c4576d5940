"""Fuzz: the public functions of scale/pyramid.py, datasets/coco.py (malformed COCO
files too) and drawing.py on hostile input. Each call gives a result that meets the
contract checked below, or a ValueError/TypeError naming the argument (hostile.py)."""

import copy
import json
import math
import os
import tempfile

import numpy as np
import torch
import torchvision.utils  # noqa: F401  (imported here: its first import is not draw_detections' time)
from hypothesis import assume, example, given
from hypothesis import strategies as st

from scalekit.datasets import CocoDetection
from scalekit.datasets.synthetic import make_synthetic_coco
from scalekit.drawing import draw_detections
from scalekit.scale import AreaRange, Pyramid, ScaleSpec, register_detector_adapter, resize_image
from tests.fuzz.hostile import (HOSTILE_FLOATS, boxes, covers, expect_clear, hostile_floats, hostile_numbers, images,
                                scores_like, time_bound)

SMALL = 10**6  # max_pixels for the fuzz: the bound is what is tested, not the allocator


@covers(resize_image)
@given(image=images(), factor=hostile_numbers())
def test_resize_image(image, factor):
    with time_bound(2.0):
        out = expect_clear(resize_image, image, factor, max_pixels=SMALL, names=("factor", "image", "max_pixels"))
    if out is not None:
        resized, fy, fx = out
        h, w = image.shape[-2:]
        assert resized.dim() == 3 and resized.shape[0] == image.shape[0]
        assert resized.shape[-2] * resized.shape[-1] <= SMALL
        assert resized.shape[-2:] == (round(h * fy), round(w * fx))
        assert resized.is_floating_point()


SETTINGS = ("sigma", "iou_threshold", "score_threshold", "max_detections", "method", "max_level_pixels")


def _fixed_detector(dets):
    boxes_, scores, labels = dets

    def detector(image):
        return boxes_, scores, labels
    return detector


@covers(Pyramid, Pyramid.detect, Pyramid.merge)
@given(setting=st.sampled_from(SETTINGS), value=st.one_of(hostile_numbers(), st.sampled_from(["linear", "gauss"])),
       data=st.data())
def test_pyramid_settings_then_detect(setting, value, data):
    with time_bound(2.0):
        pyramid = expect_clear(Pyramid, ((ScaleSpec.fixed(1.0), AreaRange()), (ScaleSpec.fixed(0.5), AreaRange())),
                               **{setting: value}, names=(setting,))
    if pyramid is None:
        return
    # what construction promises: every setting usable, so that detect fails on nothing it could have checked
    assert 0.0 <= pyramid.iou_threshold <= 1.0 and 0.0 < pyramid.sigma < math.inf
    assert not math.isnan(pyramid.score_threshold) and pyramid.method in ("linear", "gaussian", "hard")
    assert pyramid.max_detections is None or (type(pyramid.max_detections) is int and pyramid.max_detections >= 1)
    n = data.draw(st.integers(0, 6))
    b = data.draw(boxes(max_boxes=0, wrong_shapes=False, wrong_dtypes=False)) if n == 0 else torch.tensor(
        [[i * 10.0, i * 5.0, i * 10.0 + 8, i * 5.0 + 9] for i in range(n)])
    scores = torch.linspace(0.9, 0.1, n)
    labels = torch.tensor([i % 3 + 1 for i in range(n)], dtype=torch.int64)
    with time_bound(2.0):
        out = expect_clear(pyramid.detect, _fixed_detector((b, scores, labels)), torch.rand(3, 40, 60),
                           names=("max_level_pixels", "level"))
    if out is not None:
        k = len(out["boxes"])
        assert k <= 2 * n and (pyramid.max_detections is None or k <= pyramid.max_detections)
        assert out["boxes"].shape == (k, 4) and torch.isfinite(out["boxes"]).all()
        assert (out["scores"] >= pyramid.score_threshold).all()
        assert set(out["labels"].tolist()) <= set(labels.tolist())


@covers(Pyramid.detect_levels)
@given(image=st.one_of(images(), st.sampled_from([None, "no/such/file.jpg", np.zeros((4, 4, 3), np.uint8), 3.0])),
       data=st.data())
def test_pyramid_on_hostile_images_and_detector_outputs(image, data):
    n = data.draw(st.integers(0, 5))
    b = data.draw(boxes(max_boxes=n))
    b = b if b.dim() != 2 or b.shape[0] == n else b[:n]
    s = data.draw(scores_like(n))
    labels = torch.ones(n, dtype=torch.int64)
    pyramid = Pyramid(((ScaleSpec.fixed(2.0), AreaRange(0, 60)), (ScaleSpec.fixed(0.5), AreaRange(30))),
                      max_level_pixels=SMALL)
    errors = (ValueError, TypeError, FileNotFoundError)
    with time_bound(2.0):
        out = expect_clear(pyramid.detect, _fixed_detector((b, s, labels)), image, errors=errors,
                           names=("image", "images", "boxes", "detector", "max_level_pixels"))
        levels = expect_clear(pyramid.detect_levels, _fixed_detector((b, s, labels)), image, errors=errors,
                              names=("image", "images", "boxes", "detector", "max_level_pixels"))
    if out is not None:
        assert torch.isfinite(out["boxes"]).all() and torch.isfinite(out["scores"]).all()
        assert len(out["boxes"]) <= 2 * n
    if levels is not None:
        assert len(levels) == 2
        for level, (_, area) in zip(levels, pyramid.levels):
            assert area.valid_mask(level["boxes"]).all()


@covers(Pyramid.level_sizes)
@given(factor=hostile_floats(), h=st.integers(1, 5000), w=st.integers(1, 5000))
def test_levels_of_any_factor_are_bounded_or_named(factor, h, w):
    try:
        spec = ScaleSpec.fixed(factor)
    except (ValueError, TypeError):
        assume(False)  # ScaleSpec's own checks (scale/levels.py) are tested with it
    pyramid = Pyramid(((spec, AreaRange()),), max_level_pixels=SMALL)
    with time_bound(1.0):
        sizes = expect_clear(pyramid.level_sizes, h, w, names=("level",))
    if sizes is not None:
        (f, nh, nw), = sizes
        assert nh * nw <= SMALL and nh >= 1 and nw >= 1 and math.isfinite(f)


@covers(register_detector_adapter)
@given(adapter=st.sampled_from([None, 3, "torchvision"]))
def test_register_detector_adapter_refuses_what_is_not_callable(adapter):
    assert expect_clear(register_detector_adapter, adapter, names=("adapter",)) is None


# ---------------------------------------------------------------- COCO files

_BASE: dict = {}


def _base():
    """A small real COCO dataset on disk, made once per process."""
    if not _BASE:
        root, ann = make_synthetic_coco(tempfile.mkdtemp(prefix="fuzz-coco-"), num_images=2, seed=0,
                                        image_sizes=((40, 60),), min_size=4, max_size=20, objects=(1, 3))
        _BASE.update(root=root, coco=json.load(open(ann)))
    return _BASE["root"], _BASE["coco"]


HOSTILE_JSON_VALUES = st.one_of(
    st.sampled_from([None, True, False, "", "x", [], {}, [1, 2, 3], -1, 0, 2**63, -(2**31), 1e308, 0.5, 12.0]),
    st.sampled_from(HOSTILE_FLOATS), st.integers(), st.text(max_size=5)).map(copy.deepcopy)  # edits never reach
# the strategy's own constants


@st.composite
def malformed_coco(draw):
    """A valid COCO dict with a few hostile edits: a key removed, a value replaced, an
    entry duplicated or dropped, a section of the wrong type."""
    _, base = _base()
    coco = json.loads(json.dumps(base))
    for _ in range(draw(st.sampled_from([1, 1, 1, 2, 3]))):
        section = draw(st.sampled_from(["images", "annotations", "categories", None]))
        action = draw(st.sampled_from(["replace", "remove", "duplicate", "drop", "retype", "bbox", "same id"]))
        anns = coco.get("annotations")
        if action == "bbox" and isinstance(anns, list) and anns and isinstance(anns[0], dict):
            a = anns[draw(st.integers(0, len(anns) - 1))]
            if isinstance(a, dict) and isinstance(a.get("bbox"), list) and len(a["bbox"]) == 4:
                a["bbox"][draw(st.integers(0, 3))] = draw(st.one_of(st.sampled_from(HOSTILE_FLOATS),
                                                                    HOSTILE_JSON_VALUES))
            continue
        if action == "same id" and section is not None and isinstance(coco.get(section), list) \
                and len(coco[section]) >= 2 and all(isinstance(e, dict) for e in coco[section][:2]):
            coco[section][1]["id"] = coco[section][0].get("id")  # two different entries, one id
            continue
        if section is None or action == "retype":
            key = section or draw(st.sampled_from(["images", "annotations", "categories"]))
            coco[key] = draw(HOSTILE_JSON_VALUES)
            continue
        entries = coco.get(section)
        if not isinstance(entries, list) or not entries:
            continue
        k = draw(st.integers(0, len(entries) - 1))
        if action == "duplicate":
            entries.append(json.loads(json.dumps(entries[k])))
        elif action == "drop":
            entries.pop(k)
        elif isinstance(entries[k], dict) and entries[k]:
            field = draw(st.sampled_from(sorted(entries[k])))
            if action == "remove":
                entries[k].pop(field)
            elif field == "bbox" and draw(st.booleans()):
                entries[k][field][draw(st.integers(0, 3))] = draw(HOSTILE_JSON_VALUES)
            else:
                entries[k][field] = draw(HOSTILE_JSON_VALUES)
    return coco


def _text(coco, draw_cut):
    text = json.dumps(coco, allow_nan=True)
    return text[:draw_cut] if draw_cut is not None and draw_cut < len(text) else text


@covers(CocoDetection, CocoDetection.annotations, CocoDetection.ignore_boxes, CocoDetection.__getitem__)
def _edited(change):
    coco = json.loads(json.dumps(_base()[1]))
    change(coco)
    return coco


@given(coco=malformed_coco(), cut=st.one_of(st.none(), st.none(), st.none(), st.integers(0, 400)))
@example(coco=_edited(lambda c: c["annotations"][0]["bbox"].__setitem__(2, math.nan)), cut=None)
@example(coco=_edited(lambda c: c["annotations"][0]["bbox"].__setitem__(0, -math.inf)), cut=None)
@example(coco=_edited(lambda c: c["annotations"][1].update(id=c["annotations"][0]["id"])), cut=None)
@example(coco=_edited(lambda c: c["annotations"].append(dict(c["annotations"][0], bbox=[0, 0, -5, -5]))), cut=None)
@example(coco=_edited(lambda c: c["images"][0].pop("height")), cut=None)
def test_coco_detection_on_malformed_files(coco, cut):
    root, _ = _base()
    path = os.path.join(tempfile.mkdtemp(prefix="fuzz-ann-"), "ann.json")
    with open(path, "w") as f:
        f.write(_text(coco, cut))
    with time_bound(2.0):
        ds = expect_clear(CocoDetection, root, path, check_files=False, names=("ann_file",))
    if ds is None:
        return
    # the reference is the file itself: every entry is in the index, once, with its box
    raw = coco.get("annotations", [])
    assert len(ds.coco.anns) == len(raw) and len(ds.coco.imgs) == len(coco["images"])
    for a in raw:
        assert ds.coco.anns[a["id"]]["bbox"] == a["bbox"]
    for i in range(len(ds)):
        boxes_, labels, (h, w) = ds.annotations(i)
        assert torch.isfinite(boxes_).all() and (boxes_[:, 2:] >= boxes_[:, :2]).all()
        assert ((labels >= 1) & (labels <= ds.num_classes)).all() and h > 0 and w > 0
        ignore = ds.ignore_boxes(i)
        assert torch.isfinite(ignore).all() and (ignore[:, 2:] >= ignore[:, :2]).all()
    if len(ds):
        with time_bound(2.0):
            item = expect_clear(ds.__getitem__, 0, errors=(ValueError, FileNotFoundError), names=("image",))
        if item is not None:
            image, target = item
            assert image.shape[-2:] == ds.annotations(0)[2] and 0 <= float(image.min()) <= float(image.max()) <= 1


@covers(CocoDetection)
@given(blob=st.binary(max_size=64))
def test_coco_detection_on_bytes_that_are_not_json(blob):
    root, _ = _base()
    path = os.path.join(tempfile.mkdtemp(prefix="fuzz-ann-"), "ann.json")
    with open(path, "wb") as f:
        f.write(blob)
    with time_bound(2.0):
        ds = expect_clear(CocoDetection, root, path, check_files=False, names=("ann_file",))
    assert ds is None or len(ds) == 0  # nothing but an empty COCO object could be valid


# ---------------------------------------------------------------- drawing

@covers(draw_detections)
@given(image=images(max_side=40), det=boxes(max_boxes=5), gt=boxes(max_boxes=3), ignore=boxes(max_boxes=3),
       threshold=hostile_numbers(), data=st.data())
def test_draw_detections(image, det, gt, ignore, threshold, data):
    n = det.shape[0] if det.dim() == 2 else 0
    scores = data.draw(scores_like(n))
    labels = torch.tensor(data.draw(st.lists(st.integers(-3, 10), min_size=n, max_size=n)), dtype=torch.int64)
    with time_bound(3.0):
        picture = expect_clear(draw_detections, image, {"boxes": det, "scores": scores, "labels": labels},
                               ground_truth=gt, ignore_boxes=ignore, score_threshold=threshold, class_names=["a"],
                               names=("image", "detections", "ground_truth", "ignore_boxes", "score_threshold"))
    if picture is not None:
        assert picture.dtype == torch.uint8 and picture.shape == (3, *image.shape[-2:])
