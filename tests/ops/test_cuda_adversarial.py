"""Every CUDA kernel at the edges of its input space, against the CPU kernel.

Empty inputs, boxes far outside the image and the feature map (1e9 pixels,
reversed, zero-size), huge and non-finite offsets, 100k boxes, extreme
sampling ratios. The CPU kernels are the reference here: the CPU tests pin
them to torchvision and to slow references. Where the CPU answers, CUDA must
give the same answer (values and every gradient); where the CPU raises, CUDA
must raise the same exception type. ``benchmarks/gpu_check.sh`` runs these
under ``compute-sanitizer`` (memcheck: no out-of-bounds access whatever the
input; racecheck on the NMS kernels, the only ones with shared memory).

Test names start with the op family (``nms``, ``soft_nms``, ``ps_roi``,
``deform_ps_roi_pool``, ``deform_conv2d``) so that ``-k`` selects a family.
Every test needs a GPU and the CUDA kernels (marked ``cuda``: skipped without).
"""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from scalekit import ops
from tests.ops import strategies as S

pytestmark = pytest.mark.cuda

CPU = torch.device("cpu")
# The device compared with the CPU. SCALEKIT_TEST_DEVICE=cpu runs the tests'
# logic against the CPU itself where no GPU is at hand (with pytest --noconftest,
# which keeps the cuda mark from skipping them).
DEVICE = torch.device(os.environ.get("SCALEKIT_TEST_DEVICE", "cuda"))


def _to(value, device):
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, (tuple, list)):
        return type(value)(_to(v, device) for v in value)
    return value


def _outcome(fn, device, args):
    """fn(*args) with args on device, its result moved to the CPU; or the exception it raised."""
    try:
        return _to(fn(*_to(args, device)), CPU)
    except Exception as exc:  # compared with the CPU's outcome by the caller
        return exc


def assert_same_outcome(fn, *args, exact=False, rtol=None, atol=None):
    """fn on DEVICE answers as on the CPU: the same error type, or equal results
    (bit for bit with ``exact``; else within float tolerance, NaN equal to NaN).
    Returns the CPU's result."""
    expected = _outcome(fn, CPU, args)
    got = _outcome(fn, DEVICE, args)
    if isinstance(expected, Exception):
        assert isinstance(got, type(expected)), f"the CPU raised {expected!r}; {DEVICE} gave {got!r}"
        return expected
    if isinstance(got, Exception):
        raise AssertionError(f"{DEVICE} raised {got!r}; the CPU answered") from got
    pairs = list(zip(got, expected)) if isinstance(expected, (tuple, list)) else [(got, expected)]
    for i, (g, e) in enumerate(pairs):
        assert g.dtype == e.dtype and g.shape == e.shape, f"result {i}: {g.dtype} {tuple(g.shape)} vs CPU {e.dtype} {tuple(e.shape)}"
        if exact:
            assert torch.equal(g, e), f"result {i} differs from the CPU's"
        else:
            torch.testing.assert_close(g, e, rtol=rtol, atol=atol, equal_nan=True, msg=lambda m: f"result {i}: {m}")
    return expected


def forward_backward(op, differentiable):
    """A function of op's tensor arguments returning op's output and the
    gradients of a fixed weighted sum of it w.r.t. the arguments at the
    positions ``differentiable`` (zeros where an argument does not matter)."""

    def run(*args):
        args = [a.detach().requires_grad_() if i in differentiable else a for i, a in enumerate(args)]
        out = op(*args)
        weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype, device=out.device).reshape(out.shape)
        inputs = [args[i] for i in differentiable]
        grads = torch.autograd.grad((out * weights).sum(), inputs, allow_unused=True)
        return (out.detach(), *(torch.zeros_like(x) if g is None else g for g, x in zip(grads, inputs)))

    return run


# ----------------------------------------------------------------------------- NMS family


def _cluster_boxes(n, clusters, jitter, seed, dtype=torch.float32):
    """n boxes around `clusters` objects, each jittered by `jitter` of its size; scores uniform."""
    g = torch.Generator().manual_seed(seed)
    ctr = torch.rand(clusters, 2, generator=g, dtype=torch.float64) * 4000 - 1000
    size = 8 + torch.rand(clusters, 2, generator=g, dtype=torch.float64) * 300
    which = torch.randint(0, clusters, (n,), generator=g)
    c = ctr[which] + torch.randn(n, 2, generator=g, dtype=torch.float64) * size[which] * jitter
    s = size[which] * (1 + torch.randn(n, 2, generator=g, dtype=torch.float64) * jitter).clamp(min=0.5)
    boxes = torch.cat([c - s / 2, c + s / 2], 1)
    return boxes.to(dtype), torch.rand(n, generator=g, dtype=torch.float64).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64])
@pytest.mark.parametrize("op", ["nms", "batched_nms", "soft_nms", "batched_soft_nms"])
def test_nms_family_empty_inputs(op, dtype):
    boxes, scores, idxs = torch.zeros(0, 4, dtype=dtype), torch.zeros(0, dtype=dtype), torch.zeros(0, dtype=torch.int64)
    fn = {"nms": lambda b, s, i: ops.nms(b, s, 0.5), "batched_nms": lambda b, s, i: ops.batched_nms(b, s, i, 0.5),
          "soft_nms": lambda b, s, i: ops.soft_nms(b, s), "batched_soft_nms": lambda b, s, i: ops.batched_soft_nms(b, s, i)}[op]
    assert_same_outcome(fn, boxes, scores, idxs, exact=True)


@given(data=st.data(), dtype=st.sampled_from([torch.float32, torch.float64]), thr=S.iou_thresholds,
       offset=st.sampled_from([0.0, 1.0]), classes=st.integers(1, 4))
def test_nms_far_outside_degenerate_and_tied_boxes_equal_cpu(data, dtype, thr, offset, classes):
    boxes = data.draw(S.boxes(max_n=200, dtype=dtype))
    scores = data.draw(st.one_of(S.tied_scores(len(boxes), dtype), S.distinct_scores(len(boxes), dtype)))
    idxs = torch.arange(len(boxes)) % classes
    assert_same_outcome(lambda b, s: ops.nms(b, s, thr, pixel_offset=offset), boxes, scores, exact=True)
    assert_same_outcome(lambda b, s, i: ops.batched_nms(b, s, i, thr, pixel_offset=offset), boxes, scores, idxs,
                        exact=True)


@given(data=st.data(), method=st.sampled_from(["linear", "gaussian", "hard"]), thr=S.iou_thresholds,
       score_threshold=st.sampled_from([0.0, 0.001, 0.3]), classes=st.integers(1, 3))
def test_soft_nms_far_outside_degenerate_and_tied_boxes_equal_cpu(data, method, thr, score_threshold, classes):
    boxes = data.draw(S.boxes(max_n=120, dtype=torch.float64))
    scores = data.draw(st.one_of(S.tied_scores(len(boxes), torch.float64),
                                 S.distinct_scores(len(boxes), torch.float64)))
    idxs = torch.arange(len(boxes)) % classes
    args = dict(iou_threshold=thr, sigma=0.5, score_threshold=score_threshold, method=method)
    for fn, tensors in ((lambda b, s: ops.soft_nms(b, s, **args), (boxes, scores)),
                        (lambda b, s, i: ops.batched_soft_nms(b, s, i, **args), (boxes, scores, idxs))):
        expected = _outcome(fn, CPU, tensors)
        keep, kept = _outcome(fn, DEVICE, tensors)
        assert keep.tolist() == expected[0].tolist()
        torch.testing.assert_close(kept, expected[1], rtol=1e-12, atol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_nms_family_half_precision_boxes_far_outside_equal_cpu_in_float32(dtype):
    # Coordinates far outside a 1000-pixel image but inside float16's range.
    boxes, scores = _cluster_boxes(3000, 300, 0.1, seed=5)
    boxes = (boxes * 10 - 20000).to(dtype)
    scores = scores.to(dtype)
    idxs = torch.arange(3000) % 7
    # The kernels compute in float32: the CPU's answer on the same rounded inputs.
    want = ops.nms(boxes.float(), scores.float(), 0.5)
    assert ops.nms(boxes.to(DEVICE), scores.to(DEVICE), 0.5).cpu().tolist() == want.tolist()
    want = ops.batched_nms(boxes.float(), scores.float(), idxs, 0.5)
    assert ops.batched_nms(boxes.to(DEVICE), scores.to(DEVICE), idxs.to(DEVICE), 0.5).cpu().tolist() == want.tolist()
    keep, kept = ops.soft_nms(boxes.to(DEVICE), scores.to(DEVICE), method="gaussian")
    want_keep, want_kept = ops.soft_nms(boxes.float(), scores.float(), method="gaussian")
    assert keep.cpu().tolist() == want_keep.tolist() and kept.dtype == dtype
    torch.testing.assert_close(kept.cpu(), want_kept.to(dtype))


def test_nms_100k_boxes_equal_cpu():
    # Spread boxes (most survive: the longest greedy pass) mixed with 1e9-pixel ones.
    thr = 0.5
    g = torch.Generator().manual_seed(0)
    k = 100_000
    xy = torch.rand(k, 2, generator=g) * 20000 - 5000
    wh = torch.rand(k, 2, generator=g) * torch.tensor([100.0, 1e9])[torch.randint(0, 2, (k, 1), generator=g)]
    boxes, scores = torch.cat([xy, xy + wh], 1), torch.rand(k, generator=g)
    idxs = torch.randint(0, 80, (k,), generator=g)
    keep = assert_same_outcome(lambda b, s: ops.nms(b, s, thr), boxes, scores, exact=True)
    assert 0 < keep.numel() < k
    assert_same_outcome(lambda b, s, i: ops.batched_nms(b, s, i, thr), boxes, scores, idxs, exact=True)


@pytest.mark.parametrize("method", ["linear", "gaussian", "hard"])
def test_soft_nms_100k_boxes_equal_cpu(method):
    # 100k boxes in 100 tight clusters: a selected box decays its whole cluster
    # below the score threshold, so the run is a few hundred selections long.
    boxes, scores = _cluster_boxes(100_000, 100, 0.01, seed=1, dtype=torch.float64)
    idxs = torch.randint(0, 80, (100_000,), generator=torch.Generator().manual_seed(2))
    args = dict(iou_threshold=0.3, sigma=0.5, score_threshold=0.2, method=method)
    for fn, tensors in ((lambda b, s: ops.soft_nms(b, s, **args), (boxes, scores)),
                        (lambda b, s, i: ops.batched_soft_nms(b, s, i, **args), (boxes, scores, idxs))):
        expected = _outcome(fn, CPU, tensors)
        keep, kept = _outcome(fn, DEVICE, tensors)
        assert 0 < len(keep) < 100_000 and keep.tolist() == expected[0].tolist()
        torch.testing.assert_close(kept, expected[1], rtol=1e-12, atol=0)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("op", ["nms", "soft_nms"])
def test_nms_family_non_finite_input_is_the_cpus_error(op, bad):
    boxes, scores = _cluster_boxes(50, 5, 0.1, seed=3)
    boxes[17, 2] = bad
    fn = (lambda b, s: ops.nms(b, s, 0.5)) if op == "nms" else (lambda b, s: ops.soft_nms(b, s))
    assert isinstance(assert_same_outcome(fn, boxes, scores), ValueError)


# ----------------------------------------------------------------------------- position-sensitive RoI pooling

# Sampling ratios from adaptive (<= 0) to 64 samples per bin side.
SAMPLING = st.sampled_from([-1, 0, 1, 2, 7, 64])


@settings(max_examples=30)
@given(S.roi_cases(), SAMPLING, st.booleans())
def test_ps_roi_align_extreme_boxes_and_sampling_equal_cpu(case, sampling_ratio, aligned):
    x, rois, size, scale, _ = case
    op = forward_backward(lambda t, r: ops.ps_roi_align(t, r, size, scale, sampling_ratio, aligned), (0,))
    assert_same_outcome(op, x, rois)


@settings(max_examples=30)
@given(S.roi_cases())
def test_ps_roi_pool_extreme_boxes_equal_cpu(case):
    x, rois, size, scale, _ = case
    assert_same_outcome(forward_backward(lambda t, r: ops.ps_roi_pool(t, r, size, scale), (0,)), x, rois)


@pytest.mark.parametrize("op", ["ps_roi_align", "ps_roi_pool", "deform_ps_roi_pool"])
@pytest.mark.parametrize("shape, k", [((2, 9, 6, 7), 0), ((2, 9, 0, 7), 3), ((2, 9, 6, 0), 3), ((0, 9, 6, 7), 0)])
def test_ps_roi_and_deform_ps_roi_pool_empty_inputs(op, shape, k):
    x = torch.randn(*shape, dtype=torch.float64)
    rois = torch.tensor([[0.0, 1, 1, 5, 4], [1, -3, 2, 9, 9], [0, 2, 2, 2, 2]], dtype=torch.float64)[:k]
    offset = torch.randn(k, 2, 3, 3, dtype=torch.float64)
    fns = {"ps_roi_align": (lambda t, r, o: ops.ps_roi_align(t, r, 3, 1.0), (0,)),
           "ps_roi_pool": (lambda t, r, o: ops.ps_roi_pool(t, r, 3, 1.0), (0,)),
           "deform_ps_roi_pool": (lambda t, r, o: ops.deform_ps_roi_pool(t, r, o, 3, 1.0), (0, 2))}
    fn, diff = fns[op]
    assert_same_outcome(forward_backward(fn, diff), x, rois, offset)


@pytest.mark.parametrize("op", ["ps_roi_align", "ps_roi_pool"])
def test_ps_roi_100k_boxes_equal_cpu(op):
    g = torch.Generator().manual_seed(0)
    k = 100_000
    xy = torch.rand(k, 2, generator=g) * 600 - 100
    wh = torch.rand(k, 2, generator=g) * torch.tensor([300.0, 1e9])[torch.randint(0, 2, (k, 1), generator=g)]
    rois = torch.cat([torch.randint(0, 2, (k, 1), generator=g).float(), xy, xy + wh], 1)
    x = torch.randn(2, 4 * 9, 25, 38, generator=g)
    fn = {"ps_roi_align": lambda t, r: ops.ps_roi_align(t, r, 3, 1 / 16, 2),
          "ps_roi_pool": lambda t, r: ops.ps_roi_pool(t, r, 3, 1 / 16)}[op]
    # float64: the input gradient sums up to 100k atomic adds per pixel in an
    # order that differs from the CPU's; in float64 that rounding stays far
    # below the tolerance.
    assert_same_outcome(forward_backward(fn, (0,)), x.double(), rois.double())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("op", ["ps_roi_align", "ps_roi_pool"])
def test_ps_roi_half_precision_boxes_off_the_map_equal_cpu_in_float32(op, dtype):
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 2 * 49, 20, 30, generator=g)
    xy = torch.rand(200, 2, generator=g) * 3000 - 1500
    wh = torch.rand(200, 2, generator=g) * 2000
    rois = torch.cat([torch.randint(0, 2, (200, 1), generator=g).float(), xy, xy + wh], 1)
    fn = {"ps_roi_align": lambda t, r: ops.ps_roi_align(t, r, 7, 1 / 16, 2),
          "ps_roi_pool": lambda t, r: ops.ps_roi_pool(t, r, 7, 1 / 16)}[op]
    x, rois = x.to(dtype), rois.to(dtype)
    got = fn(x.to(DEVICE), rois.to(DEVICE))
    assert got.dtype == dtype and torch.isfinite(got).all()
    tol = dict(rtol=1e-2, atol=1e-2) if dtype == torch.float16 else dict(rtol=4e-2, atol=4e-2)
    torch.testing.assert_close(got.cpu().float(), fn(x.float(), rois.float()), **tol)


@settings(max_examples=30)
@given(S.roi_cases(), st.one_of(S.offsets, st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e30])),
       st.sampled_from([1, 2, 4, 32]))
def test_deform_ps_roi_pool_huge_and_non_finite_offsets_and_sampling_equal_cpu(case, value, spp):
    x, rois, size, scale, _ = case
    offset = torch.full((rois.shape[0], 2, size, size), value, dtype=x.dtype)
    offset[:, 1] *= -0.5
    op = forward_backward(lambda t, r, o: ops.deform_ps_roi_pool(t, r, o, size, scale, sample_per_part=spp), (0, 2))
    assert_same_outcome(op, x, rois, offset)


def test_deform_ps_roi_pool_100k_boxes_random_offsets_equal_cpu():
    g = torch.Generator().manual_seed(6)
    k = 100_000
    xy = torch.rand(k, 2, generator=g) * 600 - 100
    wh = 1 + torch.rand(k, 2, generator=g) * 400
    rois = torch.cat([torch.randint(0, 2, (k, 1), generator=g).float(), xy, xy + wh], 1)
    x = torch.randn(2, 2 * 9, 25, 38, generator=g)
    offset = torch.randn(k, 2, 3, 3, generator=g) * 3
    op = forward_backward(lambda t, r, o: ops.deform_ps_roi_pool(t, r, o, 3, 1 / 16, sample_per_part=2), (0, 2))
    assert_same_outcome(op, x.double(), rois.double(), offset.double())


# ----------------------------------------------------------------------------- deformable convolution

LAYOUTS = [  # (input shape, weight shape, stride, padding, dilation, groups, offset groups)
    ((2, 4, 9, 11), (6, 4, 3, 3), 1, 1, 1, 1, 1),
    ((1, 4, 12, 7), (4, 2, 1, 3), (2, 1), (0, 2), (1, 3), 2, 2),
    ((2, 6, 8, 8), (6, 3, 5, 5), 3, 4, 2, 2, 3),
    ((1, 2, 5, 5), (3, 2, 3, 3), 1, 5, 4, 1, 1),  # padding beyond the map
]


def _conv_inputs(layout, value, masked, seed=0):
    xs, ws, stride, padding, dilation, _, offset_groups = layout
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*xs, generator=g, dtype=torch.float64)
    w = torch.randn(*ws, generator=g, dtype=torch.float64)
    b = torch.randn(ws[0], generator=g, dtype=torch.float64)
    pair = lambda v: (v, v) if isinstance(v, int) else v  # noqa: E731
    (sh, sw), (ph, pw), (dh, dw) = pair(stride), pair(padding), pair(dilation)
    ho = (xs[2] + 2 * ph - dh * (ws[2] - 1) - 1) // sh + 1
    wo = (xs[3] + 2 * pw - dw * (ws[3] - 1) - 1) // sw + 1
    taps = ws[2] * ws[3]
    offset = torch.randn(xs[0], 2 * offset_groups * taps, ho, wo, generator=g, dtype=torch.float64) * 2
    if value is not None:  # every other offset set to the extreme value
        offset.view(-1)[::2] = value
    mask = torch.rand(xs[0], offset_groups * taps, ho, wo, generator=g, dtype=torch.float64) * 3 - 1 if masked else None
    return x, offset, w, b, mask


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("value", [None, 1e6, -1e6, 1e30, float("nan"), float("inf"), -float("inf"), 0.5 - 2**-30])
@pytest.mark.parametrize("layout", range(len(LAYOUTS)))
def test_deform_conv2d_huge_and_non_finite_offsets_equal_cpu(layout, value, masked):
    x, offset, w, b, mask = _conv_inputs(LAYOUTS[layout], value, masked)
    _, _, stride, padding, dilation, _, _ = LAYOUTS[layout]
    tensors = (x, offset, w, b) + ((mask,) if masked else ())

    def conv(x, offset, w, b, mask=None):
        return ops.deform_conv2d(x, offset, w, b, stride=stride, padding=padding, dilation=dilation, mask=mask)

    assert_same_outcome(forward_backward(conv, tuple(range(len(tensors)))), *tensors)


@pytest.mark.parametrize("case", ["batch0", "map0", "out_channels0"])
def test_deform_conv2d_empty_inputs(case):
    x = torch.randn(2, 2, 5, 5, dtype=torch.float64)
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64)
    offset = torch.randn(2, 18, 5, 5, dtype=torch.float64)
    if case == "batch0":
        x, offset = x[:0], offset[:0]
    elif case == "map0":
        x, offset = x[:, :, :0], offset[:, :, :0]
    else:
        w = w[:0]
    conv = forward_backward(lambda x, o, w: ops.deform_conv2d(x, o, w, padding=1), (0, 1, 2))
    assert_same_outcome(conv, x, offset, w)


def test_deform_conv2d_large_random_offsets_float32_equal_cpu():
    g = torch.Generator().manual_seed(7)
    x = torch.randn(4, 16, 33, 47, generator=g)
    w = torch.randn(24, 8, 3, 3, generator=g) * 0.1
    offset = torch.randn(4, 2 * 2 * 9, 33, 47, generator=g) * 20  # samples reach far off the map
    mask = torch.rand(4, 2 * 9, 33, 47, generator=g)
    conv = forward_backward(lambda x, o, w, m: ops.deform_conv2d(x, o, w, padding=1, mask=m), (0, 1, 2, 3))
    assert_same_outcome(conv, x, offset, w, mask, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_deform_conv2d_half_precision_equals_cpu_in_float32(dtype):
    g = torch.Generator().manual_seed(8)
    x = torch.randn(2, 8, 16, 16, generator=g).to(dtype)
    w = (torch.randn(8, 8, 3, 3, generator=g) * 0.1).to(dtype)
    offset = (torch.randn(2, 18, 16, 16, generator=g) * 4).to(dtype)
    got = ops.deform_conv2d(x.to(DEVICE), offset.to(DEVICE), w.to(DEVICE), padding=1)
    assert got.dtype == dtype and torch.isfinite(got).all()
    want = ops.deform_conv2d(x.float(), offset.float(), w.float(), padding=1)
    tol = dict(rtol=1e-2, atol=2e-2) if dtype == torch.float16 else dict(rtol=5e-2, atol=1e-1)
    torch.testing.assert_close(got.cpu().float(), want, **tol)
