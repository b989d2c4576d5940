"""Fuzz every public function of scalekit.ops with hostile input (tests/fuzz/hostile.py).

Each example ends in one of two ways: a result that meets the op's contract
(checked against a property: torchvision's answer, a per-category merge, a
shape and finiteness, non-increasing scores), or a ValueError / TypeError whose
message names the argument that was bad; every call within a time bound. The
budget is the hypothesis profile (``ci``: 40 examples per test; by hand:
``HYPOTHESIS_PROFILE=thorough``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchvision
from hypothesis import given
from hypothesis import strategies as st

from scalekit import ops
from tests.fuzz.hostile import HOSTILE_FLOATS, boxes, covers, expect_clear, hostile_ints, hostile_numbers, time_bound
from tests.ops.merge_reference import ref_greedy_nmm, ref_nmm

BOUND = 2.0  # seconds per call: every example here is small (the dense Soft-NMS case has its own)

NMS_NAMES = ("boxes", "scores", "iou_threshold", "idxs", "labels", "groups", "pixel_offset")
SOFT_NAMES = NMS_NAMES + ("sigma", "score_threshold", "method")
ROI_NAMES = ("input", "boxes", "output_size", "spatial_scale", "sampling_ratio", "offset", "group_size",
             "part_size", "sample_per_part", "trans_std", "out_channels", "hidden_dim")
CONV_NAMES = ("input", "offset", "weight", "bias", "mask", "stride", "padding", "dilation", "in_channels",
              "out_channels", "kernel_size", "groups", "offset_groups")


def finite(*tensors) -> bool:
    return all(t is None or bool(torch.isfinite(t).all()) for t in tensors)


# Scores: NaN, inf, negative, ties; sometimes the wrong length or dtype.
@st.composite
def scores_for(draw, n):
    value = st.one_of(st.floats(-1, 1, width=32), st.sampled_from([math.nan, math.inf, -math.inf, 0.0, 0.5, -0.5]))
    s = torch.tensor(draw(st.lists(value, min_size=n, max_size=n)), dtype=torch.float32).reshape(n)
    kind = draw(st.integers(0, 11))
    if kind == 0:
        return s[:-1] if n else torch.zeros(1)
    if kind == 1:
        return s.to(draw(st.sampled_from([torch.int64, torch.bool])))
    if kind == 2:
        return s.double()
    return s


def as_number(value):
    """A drawn threshold as the float the op should use (None: not a usable number)."""
    if isinstance(value, torch.Tensor):
        value = value.item()
    if isinstance(value, (bool, np.bool_, str)) or value is None:
        return None
    v = float(value)
    return None if math.isnan(v) else v


def usable_boxes(b, s) -> bool:
    return (b.dim() == 2 and b.shape[1] == 4 and b.is_floating_point() and s.dim() == 1
            and s.shape[0] == b.shape[0] and s.is_floating_point() and finite(b, s))


def check_keep(keep, b, s):
    assert keep.dtype == torch.int64 and keep.dim() == 1
    assert len(set(keep.tolist())) == len(keep) and all(0 <= i < b.shape[0] for i in keep.tolist())
    ks = s[keep].double()
    assert (ks[1:] <= ks[:-1]).all()


# ---------------------------------------------------------------- greedy NMS

@covers(ops.nms)
@given(b=boxes(), data=st.data(), thr=hostile_numbers())
def test_nms(b, data, thr):
    s = data.draw(scores_for(b.shape[0] if b.dim() else 0))
    with time_bound(BOUND):
        keep = expect_clear(ops.nms, b, s, thr, names=NMS_NAMES)
    if keep is None:
        return
    assert usable_boxes(b, s) and as_number(thr) is not None
    check_keep(keep, b, s)
    if b.dtype != torch.float16:  # torchvision's CPU nms has no float16
        assert torch.equal(keep, torchvision.ops.nms(b, s.to(b.dtype), as_number(thr)))


@st.composite
def categories(draw, n):
    c = torch.tensor(draw(st.lists(st.integers(-3, 3), min_size=n, max_size=n)), dtype=torch.int64).reshape(n)
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return c.float()
    if kind == 1:
        return c[:-1] if n else torch.zeros(2, dtype=torch.int64)
    if kind == 2:
        return c.to(torch.int32)
    return c


def merged_per_category(b, s, c, thr):
    """NMS within each category, merged by decreasing score then index: what batched NMS must give."""
    out = []
    for cat in c.unique().tolist():
        members = (c == cat).nonzero().flatten()
        out += [(-float(s[members[k]]), int(members[k])) for k in ops.nms(b[members], s[members], thr).tolist()]
    return [i for _, i in sorted(out)]


@covers(ops.batched_nms)
@given(b=boxes(), data=st.data(), thr=hostile_numbers())
def test_batched_nms(b, data, thr):
    n = b.shape[0] if b.dim() else 0
    s, c = data.draw(scores_for(n)), data.draw(categories(n))
    with time_bound(BOUND):
        keep = expect_clear(ops.batched_nms, b, s, c, thr, names=NMS_NAMES)
    if keep is None or b.numel() == 0:
        return
    check_keep(keep, b, s)
    assert keep.tolist() == merged_per_category(b, s, c.long(), as_number(thr))


@covers(ops.grouped_nms)
@given(b=boxes(), data=st.data(), thr=hostile_numbers())
def test_grouped_nms(b, data, thr):
    n = b.shape[0] if b.dim() else 0
    s = data.draw(scores_for(n))
    labels = data.draw(categories(n))
    groups = data.draw(st.one_of(
        st.lists(st.integers(0, 2), min_size=0, max_size=5).map(lambda v: torch.tensor(v, dtype=torch.int64)),
        st.sampled_from([torch.zeros(2, 2, dtype=torch.int64), torch.zeros(4), [0, 1]])))
    with time_bound(BOUND):
        keep = expect_clear(ops.grouped_nms, b, s, labels, groups, thr, names=NMS_NAMES)
    if keep is None:
        return
    check_keep(keep, b, s)
    if b.numel():
        assert torch.equal(keep, ops.batched_nms(b, s, groups[labels.long()], thr))


# ---------------------------------------------------------------- Soft-NMS

METHODS = st.sampled_from(["linear", "gaussian", "hard", "soft", "", "Linear", None, 2])


def check_soft(result, b, s, floor):
    keep, kept = result
    assert keep.dtype == torch.int64 and kept.dtype == s.dtype and len(kept) == len(keep)
    assert len(set(keep.tolist())) == len(keep) and all(0 <= i < b.shape[0] for i in keep.tolist())
    assert (kept[1:] <= kept[:-1]).all()  # non-increasing, negative scores too
    assert (kept.double() >= floor).all() and (kept.double() <= s[keep].double()).all()  # a decay never raises


@covers(ops.soft_nms, ops.batched_soft_nms, ops.SoftNMS)
@given(b=boxes(), data=st.data(), thr=hostile_numbers(), sigma=hostile_numbers(), floor=hostile_numbers(),
       method=METHODS, form=st.sampled_from(["function", "batched", "module"]))
def test_soft_nms(b, data, thr, sigma, floor, method, form):
    n = b.shape[0] if b.dim() else 0
    s = data.draw(scores_for(n))
    c = data.draw(categories(n))
    with time_bound(BOUND):
        if form == "function":
            result = expect_clear(ops.soft_nms, b, s, thr, sigma, floor, method, names=SOFT_NAMES)
        elif form == "batched":
            result = expect_clear(ops.batched_soft_nms, b, s, c, thr, sigma, floor, method, names=SOFT_NAMES)
        else:
            module = expect_clear(ops.SoftNMS, thr, sigma, floor, method, names=SOFT_NAMES)
            result = None if module is None else expect_clear(module, b, s, c, names=SOFT_NAMES)
    if result is not None:
        check_soft(result, b, s, as_number(floor))


@covers(ops.soft_nms)
@given(n=st.integers(0, 2500), method=st.sampled_from(["linear", "gaussian"]), seed=st.integers(0, 99))
def test_soft_nms_on_dense_clusters_is_bounded(n, method, seed):
    # N identical boxes, nothing discarded: every box decays every other one,
    # N**2 / 2 pairs. The old heap kernel took 2 s at 2,000 boxes (N**2.7).
    b = torch.tensor([[0.0, 0, 10, 10]]).repeat(n, 1)
    s = torch.rand(n, generator=torch.Generator().manual_seed(seed)) - 0.5
    with time_bound(2.0):
        result = expect_clear(ops.soft_nms, b, s, 0.3, 0.5, -math.inf, method, names=SOFT_NAMES)
    check_soft(result, b, s, -math.inf)
    assert len(result[0]) == n


# ---------------------------------------------------------------- non-maximum merging (SAHI's GREEDYNMM, NMM)

MERGE_NAMES = ("boxes", "scores", "idxs", "match_threshold", "metric")
MERGE_KINDS = {"greedy_nmm": (ops.greedy_nmm, ref_greedy_nmm), "nmm": (ops.nmm, ref_nmm)}


@covers(ops.greedy_nmm, ops.nmm)
@given(b=boxes(), data=st.data(), thr=hostile_numbers(), kind=st.sampled_from(sorted(MERGE_KINDS)),
       metric=st.sampled_from(["iou", "ios", "IoS", "giou", "", None, 1]), per_class=st.booleans())
def test_merge(b, data, thr, kind, metric, per_class):
    n = b.shape[0] if b.dim() else 0
    s = data.draw(scores_for(n))
    c = data.draw(categories(n)) if per_class else None
    fn, ref = MERGE_KINDS[kind]
    with time_bound(BOUND):
        result = expect_clear(fn, b, s, c, thr, metric, names=MERGE_NAMES)
    if result is None:
        return
    assert usable_boxes(b, s) and as_number(thr) is not None
    keep, merged, merged_scores = result
    check_keep(keep, b, s)
    assert merged.dtype == b.dtype and merged_scores.dtype == s.dtype and merged.shape == (len(keep), 4)
    assert torch.equal(merged_scores, s[keep])
    with np.errstate(all="ignore"):  # huge coordinates overflow the reference's areas as they do the kernel's
        expected = ref(b, s, None if c is None else c.long(), as_number(thr), metric.lower())
    assert torch.equal(keep, expected[0]) and torch.equal(merged, expected[1])


@covers(ops.greedy_nmm, ops.nmm)
@given(n=st.integers(0, 20000), kind=st.sampled_from(sorted(MERGE_KINDS)), seed=st.integers(0, 99))
def test_merge_on_dense_clusters_is_bounded(n, kind, seed):
    # N identical boxes: the first keeper takes all the others in one pass.
    b = torch.tensor([[0.0, 0, 10, 10]]).repeat(n, 1)
    s = torch.rand(n, generator=torch.Generator().manual_seed(seed))
    with time_bound(2.0):
        keep, merged, _ = MERGE_KINDS[kind][0](b, s, None, 0.5, "iou")
    assert len(keep) == min(n, 1) and merged.tolist() == [[0.0, 0, 10, 10]] * min(n, 1)


# ---------------------------------------------------------------- position-sensitive RoI pooling

SIZES = st.one_of(st.integers(1, 3), hostile_ints(), st.sampled_from([2.0, 2.5, (2, 2), (1, 3), (2, 2.0), (0, 2),
                                                                     "2", None, (2, 2, 2)]))


@st.composite
def feature_maps(draw, channels):
    """``[N, C, H, W]`` maps: zero-sized, NaN/inf pixels, float64/float16, integer; sometimes 3-D."""
    n, h, w = draw(st.integers(1, 2)), draw(st.integers(0, 6)), draw(st.integers(0, 6))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2 ** 16)))
    x = torch.rand(n, channels, h, w, generator=g)
    kind = draw(st.sampled_from(["float", "float64", "float16", "nan", "int", "3d"]))
    if kind == "float64":
        x = x.double()
    elif kind == "float16":
        x = x.half()
    elif kind == "nan" and x.numel():
        x.view(-1)[draw(st.integers(0, x.numel() - 1))] = draw(st.sampled_from([math.nan, math.inf]))
    elif kind == "int":
        x = (x * 10).long()
    elif kind == "3d":
        x = x[0]
    return x


@st.composite
def rois_for(draw, batch):
    """``[K, 5]`` RoIs from hostile boxes, with hostile batch indices; or a list of ``[L, 4]``."""
    b = draw(boxes(max_boxes=4, wrong_dtypes=False))
    if b.dim() != 2 or b.shape[1] != 4:
        return b
    if draw(st.integers(0, 4)) == 0:
        return [b[: len(b) // 2], b[len(b) // 2:]][:batch]
    idx = st.one_of(st.integers(0, batch - 1).map(float), st.sampled_from([-1.0, float(batch), 0.5, math.nan]))
    col = torch.tensor(draw(st.lists(idx, min_size=len(b), max_size=len(b))), dtype=b.dtype).reshape(-1, 1)
    return torch.cat([col, b], 1)


def as_pair(size):
    if isinstance(size, (tuple, list)):
        return tuple(int(v) for v in size)
    return int(size), int(size)


def check_pooled(out, x, rois, size, *, nan_ok=False):
    ph, pw = as_pair(size)
    k = sum(len(r) for r in rois) if isinstance(rois, list) else rois.shape[0]
    assert out.shape == (k, x.shape[1] // (ph * pw) if not nan_ok else out.shape[1], ph, pw)
    assert out.dtype == x.dtype
    if finite(x) and not nan_ok:
        assert torch.isfinite(out).all()


@covers(ops.ps_roi_pool, ops.ps_roi_align, ops.PSRoIPool, ops.PSRoIAlign)
@given(data=st.data(), size=SIZES, scale=hostile_numbers(), ratio=st.one_of(hostile_ints(), st.sampled_from([1024, 1025, 2.0])),
       aligned=st.booleans(), form=st.sampled_from(["pool", "align", "Pool", "Align"]))
def test_ps_roi_pool_and_align(data, size, scale, ratio, aligned, form):
    bins = data.draw(st.sampled_from([1, 4, 9]))
    x = data.draw(feature_maps(channels=bins * data.draw(st.integers(0, 2))))
    rois = data.draw(rois_for(x.shape[0] if x.dim() == 4 else 1))
    with time_bound(BOUND):
        if form == "pool":
            out = expect_clear(ops.ps_roi_pool, x, rois, size, scale, names=ROI_NAMES)
        elif form == "align":
            out = expect_clear(ops.ps_roi_align, x, rois, size, scale, ratio, aligned, names=ROI_NAMES)
        else:
            make = ops.PSRoIPool if form == "Pool" else ops.PSRoIAlign
            args = (size, scale) if form == "Pool" else (size, scale, ratio, aligned)
            module = expect_clear(make, *args, names=ROI_NAMES)
            out = None if module is None else expect_clear(module, x, rois, names=ROI_NAMES)
    if out is not None:
        check_pooled(out, x, rois, size)


OFFSETS = st.one_of(st.none(), st.sampled_from(HOSTILE_FLOATS), st.floats(-3, 3))


@covers(ops.deform_ps_roi_pool, ops.DeformPSRoIPool, ops.DeformPSRoIPoolPack)
@given(data=st.data(), size=st.one_of(st.integers(1, 3), st.sampled_from([0, -1, 2.0, (2, 3)])),
       offset_value=OFFSETS, spp=st.one_of(st.integers(1, 3), hostile_ints(), st.sampled_from([1024, 1025, 2.0])),
       trans_std=hostile_numbers(), scale=st.one_of(st.sampled_from([1.0, 0.5]), hostile_numbers()),
       form=st.sampled_from(["function", "module", "pack"]))
def test_deform_ps_roi_pool(data, size, offset_value, spp, trans_std, scale, form):
    x = data.draw(feature_maps(channels=data.draw(st.sampled_from([1, 4, 9, 18]))))
    rois = data.draw(rois_for(x.shape[0] if x.dim() == 4 else 1))
    k = rois.shape[0] if isinstance(rois, torch.Tensor) and rois.dim() == 2 else 1
    ph, pw = as_pair(size) if isinstance(size, (int, tuple)) else (1, 1)
    offset = None
    if offset_value is not None:
        shape = data.draw(st.sampled_from([(k, 2, max(ph, 1), max(pw, 1)), (k, 2, 1, 1), (k, 3)]))
        offset = torch.full(shape, offset_value).to(x.dtype if x.is_floating_point() else torch.float32)
    with time_bound(BOUND):
        if form == "function":
            out = expect_clear(ops.deform_ps_roi_pool, x, rois, offset, size, scale, None, None, spp, trans_std,
                               names=ROI_NAMES)
        elif form == "module":
            module = expect_clear(ops.DeformPSRoIPool, size, scale, None, None, spp, trans_std, names=ROI_NAMES)
            out = None if module is None else expect_clear(module, x, rois, offset, names=ROI_NAMES)
        else:
            channels = x.shape[1] // (ph * pw) if x.dim() == 4 and ph * pw > 0 else 1
            module = expect_clear(ops.DeformPSRoIPoolPack, channels, size, scale, None, None, spp, trans_std,
                                  hidden_dim=8, names=ROI_NAMES)
            out = None if module is None else expect_clear(module, x.float() if x.is_floating_point() else x, rois,
                                                           names=ROI_NAMES)
    if out is None:
        return
    nan_offset = offset is not None and form != "pack" and bool(torch.isnan(offset).any())
    check_pooled(out, x, rois, size, nan_ok=nan_offset or form == "pack")
    if nan_offset and out.numel():
        assert torch.isnan(out).all()  # one offset value for every cell: every bin is NaN


# ---------------------------------------------------------------- deformable convolution

PAIRS = st.one_of(st.integers(0, 2), hostile_ints(), st.sampled_from([1.0, (1, 2), (1, 1.0), "1", None]))


@covers(ops.deform_conv2d, ops.DeformConv2d, ops.DeformConv2dPack)
@given(data=st.data(), stride=PAIRS, padding=PAIRS, dilation=PAIRS, offset_value=OFFSETS,
       mask_value=st.one_of(st.none(), st.sampled_from([1.0, 0.5, math.nan, math.inf, -1.0])),
       form=st.sampled_from(["function", "module", "pack"]))
def test_deform_conv2d(data, stride, padding, dilation, offset_value, mask_value, form):
    x = data.draw(feature_maps(channels=data.draw(st.sampled_from([1, 2, 4]))))
    c_in = x.shape[1] if x.dim() == 4 else 1
    k = data.draw(st.sampled_from([1, 3]))
    weight = torch.rand(2, c_in, k, k, dtype=x.dtype if x.is_floating_point() else torch.float32)
    if x.dim() == 4 and form == "function":
        # the offset's spatial size: the right one for sane arguments, else something
        if all(type(v) is int for v in (stride, padding, dilation)) and stride != 0:
            ho = (x.shape[2] + 2 * padding - dilation * (k - 1) - 1) // stride + 1
            wo = (x.shape[3] + 2 * padding - dilation * (k - 1) - 1) // stride + 1
            ho, wo = min(max(ho, 0), 8), min(max(wo, 0), 8)
        else:
            ho = wo = 1
    else:
        ho = wo = 1
    value = 0.0 if offset_value is None else offset_value
    offset = torch.full((x.shape[0] if x.dim() == 4 else 1, 2 * k * k, ho, wo), value, dtype=weight.dtype)
    mask = None if mask_value is None else torch.full((offset.shape[0], k * k, ho, wo), mask_value, dtype=weight.dtype)
    with time_bound(BOUND):
        if form == "function":
            out = expect_clear(ops.deform_conv2d, x, offset, weight, None, stride, padding, dilation, mask,
                               names=CONV_NAMES)
        else:
            make = ops.DeformConv2d if form == "module" else ops.DeformConv2dPack
            kwargs = dict(modulated=True) if form == "pack" and mask_value is not None else {}
            layer = expect_clear(make, c_in, 2, k, stride, padding, dilation, names=CONV_NAMES, **kwargs)
            if layer is None:
                return
            if form == "module":
                out = expect_clear(layer, x, offset, mask, names=CONV_NAMES)
            else:
                out = expect_clear(layer, x.float() if x.is_floating_point() else x, names=CONV_NAMES)
    if out is None:
        return
    assert out.dim() == 4 and out.shape[1] == 2
    if form == "function":
        assert out.shape[2:] == (ho, wo)
        bad = not finite(offset) or (mask is not None and not finite(mask))
        if bad and out.numel() and offset_value is not None and math.isnan(offset_value):
            assert torch.isnan(out).all()  # a NaN offset everywhere: NaN everywhere
        if not bad and finite(x) and x.dtype in (torch.float32, torch.float64):
            expected = torchvision.ops.deform_conv2d(x, offset, weight, None, stride, padding, dilation, mask)
            torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------- ONNX export

@covers(ops.export_onnx, ops.onnx_translation_table)
@given(model=st.sampled_from([None, "model", len, torch.nn.Identity()]),
       args=st.sampled_from([None, [torch.zeros(1)], "x", (torch.zeros(1),)]),
       opset=st.one_of(hostile_ints(), st.sampled_from([18, 19.0, "19", None, True])))
def test_onnx_export_arguments(model, args, opset):
    # Exporting a real model takes seconds (tests/ops cover that); every hostile
    # combination here must be refused at once, naming the argument.
    pytest.importorskip("onnxscript")
    valid = isinstance(model, torch.nn.Module) and isinstance(args, tuple) and type(opset) is int and opset >= 19
    if valid:
        opset = 18
    with time_bound(BOUND):
        out = expect_clear(ops.export_onnx, model, args, opset_version=opset,
                           names=("model", "args", "opset_version"))
    assert out is None
    table = ops.onnx_translation_table()
    assert {getattr(torch.ops.scalekit, name).default for name in ("nms", "soft_nms", "ps_roi_align")} <= set(table)


def test_every_public_function_is_covered():
    # The summary line counts what the tests above cover; this keeps it complete.
    from tests.fuzz.hostile import COVERED

    public = {f"{getattr(ops, name).__module__}.{getattr(ops, name).__qualname__}" for name in ops.__all__
              if callable(getattr(ops, name))}
    assert public <= COVERED, sorted(public - COVERED)


pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
