"""Fuzz: the public functions of scalekit.slicing on hostile input. Each call gives a
result that meets the contract checked below, or a ValueError/TypeError naming the
argument (hostile.py)."""

import math

import torch
from hypothesis import given
from hypothesis import strategies as st

from scalekit import slicing
from scalekit.slicing import MergeSettings, merge_detections, slice_grid, sliced_detect
from tests.fuzz.hostile import boxes, covers, expect_clear, hostile_numbers, images, scores_like, time_bound


def _sizes():
    return st.one_of(hostile_numbers(), st.integers(1, 300), st.tuples(hostile_numbers(), st.integers(1, 100)),
                     st.lists(st.integers(1, 50), max_size=3))


def _overlaps():
    return st.one_of(hostile_numbers(), st.floats(0, 1), st.tuples(st.floats(-1, 1), hostile_numbers()))


@covers(slice_grid)
@given(height=st.one_of(hostile_numbers(), st.integers(1, 400)), width=st.one_of(hostile_numbers(), st.integers(1, 400)),
       slice_size=_sizes(), overlap=_overlaps())
def test_slice_grid(height, width, slice_size, overlap):
    with time_bound(2.0):
        out = expect_clear(slice_grid, height, width, slice_size, overlap,
                           names=("image_height", "image_width", "slice_size", "overlap"))
    if out is None:
        return
    h, w = int(height), int(width)
    assert out.dtype == torch.int64 and out.dim() == 2 and out.shape[1] == 4 and len(out) >= 1
    assert (out[:, 0] >= 0).all() and (out[:, 1] >= 0).all() and (out[:, 2] <= w).all() and (out[:, 3] <= h).all()
    assert (out[:, 2] > out[:, 0]).all() and (out[:, 3] > out[:, 1]).all()
    if h * w <= 10**6:  # every pixel in a window
        covered = torch.zeros(h, w, dtype=torch.bool)
        for x1, y1, x2, y2 in out.tolist():
            covered[y1:y2, x1:x2] = True
        assert covered.all()


SETTINGS = ("slice_size", "overlap", "full_image", "batch_size", "merge", "iou_threshold", "class_agnostic",
            "score_threshold", "sigma", "soft_nms_method", "max_detections", "progress")


def _detector(image):
    h, w = image.shape[-2:]
    return torch.tensor([[0.0, 0, w / 2, h / 2], [1, 1, w / 2 + 1, h / 2 + 1]]), torch.tensor([0.9, 0.8]), \
        torch.tensor([1, 2])


@covers(sliced_detect)
@given(setting=st.sampled_from(SETTINGS),
       value=st.one_of(hostile_numbers(), st.sampled_from(["nms", "soft_nms", "greedy", "linear", (8, 8), (0.1, 2)])))
def test_sliced_detect_settings(setting, value):
    with time_bound(5.0):
        out = expect_clear(sliced_detect, _detector, torch.rand(3, 40, 60), **{setting: value},
                           names=(setting, f"{setting}[0] (height)", f"{setting}[1] (width)", "full_image's factor"))
    if out is not None:
        n = len(out["boxes"])
        assert out["boxes"].shape == (n, 4) and out["scores"].shape == (n,) and out["labels"].shape == (n,)
        assert torch.isfinite(out["boxes"]).all()
        assert ((out["boxes"] >= 0) & (out["boxes"] <= torch.tensor([60.0, 40, 60, 40]))).all()


@covers(sliced_detect)
@given(image=images(max_side=70))
def test_sliced_detect_images(image):
    with time_bound(5.0):
        out = expect_clear(sliced_detect, _detector, image, slice_size=32, names=("image",))
    if out is not None:
        h, w = image.shape[-2:]
        assert ((out["boxes"] >= 0) & (out["boxes"] <= torch.tensor([w, h, w, h], dtype=torch.float32))).all()


@covers(merge_detections)
@given(b=boxes(), data=st.data(), merge=st.sampled_from(["nms", "soft_nms"]))
def test_merge_detections(b, data, merge):
    n = b.shape[0] if b.dim() >= 1 else 0
    scores = data.draw(scores_like(n))
    labels = torch.arange(n) % 3
    with time_bound(2.0):
        out = expect_clear(merge_detections, b, scores, labels, merge, names=("boxes", "scores", "labels"))
    if out is not None:
        k = len(out["boxes"])
        assert k <= n and out["scores"].shape == (k,) and out["labels"].shape == (k,)
        assert not any(math.isnan(s) for s in out["scores"].tolist())


MERGE_FIELDS = ("iou_threshold", "class_agnostic", "sigma", "soft_nms_method", "score_threshold")


@covers(MergeSettings)
@given(field=st.sampled_from(MERGE_FIELDS), value=st.one_of(hostile_numbers(), st.sampled_from(["hard", "x"])))
def test_merge_settings(field, value):
    with time_bound(1.0):
        settings = expect_clear(MergeSettings, **{field: value}, names=(field,))
    if settings is not None:  # usable: a merge with it runs
        assert 0.0 <= settings.iou_threshold <= 1.0 and settings.sigma > 0 and isinstance(settings.class_agnostic, bool)
        out = merge_detections(torch.tensor([[0.0, 0, 4, 4], [1, 1, 5, 5]]), torch.tensor([0.9, 0.8]),
                               torch.tensor([1, 1]), "soft_nms", settings=settings)
        assert len(out["boxes"]) <= 2


def test_every_public_function_is_covered():
    from tests.fuzz.hostile import COVERED

    public = {f"{getattr(slicing, name).__module__}.{getattr(slicing, name).__qualname__}"
              for name in slicing.__all__ if callable(getattr(slicing, name))}
    assert public <= COVERED, sorted(public - COVERED)
