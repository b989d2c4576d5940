"""Every op at the edges of its input space (what `make sanitize` runs under
ASan + UBSan): zero-size maps, zero-size, reversed and huge boxes, 1e9-pixel
coordinates, offsets of 1e6, 100k boxes, non-contiguous and channels-last
inputs. The answer is finite, has the documented shape and does not depend on
the memory layout; where torchvision answers, it is torchvision's answer."""

import pytest
import torch
from tests.peers import torchvision
from hypothesis import given
from hypothesis import strategies as st

from scalekit import ops
from tests.ops import strategies as S


def _grad(fn, x):
    x = x.detach().requires_grad_()
    out = fn(x)
    weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)
    (g,) = torch.autograd.grad((out * weights).sum() + 0 * x.sum(), x)
    return out.detach(), g


def _check(fn, x, layout):
    out, grad = _grad(fn, x)
    assert torch.isfinite(out).all() and torch.isfinite(grad).all()
    assert grad.shape == x.shape
    out_l, grad_l = _grad(fn, S.layout(x, layout))
    assert torch.equal(out_l, out) and torch.equal(grad_l, grad)
    return out


@given(S.roi_cases(), st.sampled_from([-1, 1, 2]), st.booleans())
def test_ps_roi_align(case, sampling_ratio, aligned):
    x, rois, size, scale, layout = case
    out = _check(lambda t: ops.ps_roi_align(t, rois, size, scale, sampling_ratio, aligned), x, layout)
    assert out.shape == (rois.shape[0], 1, size, size)
    if x.shape[2] == 0 or x.shape[3] == 0:
        assert torch.equal(out, torch.zeros_like(out))


@given(S.roi_cases())
def test_ps_roi_pool(case):
    x, rois, size, scale, layout = case
    out = _check(lambda t: ops.ps_roi_pool(t, rois, size, scale), x, layout)
    assert out.shape == (rois.shape[0], 1, size, size)


@given(S.roi_cases(), S.offsets, st.sampled_from([1, 2]))
def test_deform_ps_roi_pool(case, offset_value, spp):
    x, rois, size, scale, layout = case
    offset = torch.full((rois.shape[0], 2, size, size), offset_value, dtype=x.dtype)
    offset[:, 1] *= -0.5
    out = _check(lambda t: ops.deform_ps_roi_pool(t, rois, offset, size, scale, sample_per_part=spp), x, layout)
    assert out.shape == (rois.shape[0], 1, size, size)
    o = offset.clone().requires_grad_()
    (g,) = torch.autograd.grad(ops.deform_ps_roi_pool(x, rois, o, size, scale, sample_per_part=spp).sum() + 0 * o.sum(), o)
    assert torch.isfinite(g).all()


@given(S.offsets, S.layouts, st.sampled_from([(0, 5), (4, 0), (3, 4), (6, 6)]), st.booleans())
def test_deform_conv2d_equals_torchvision_at_any_offset(value, layout, hw, masked):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 2, *hw, generator=g, dtype=torch.float64)
    weight = torch.randn(3, 2, 3, 3, generator=g, dtype=torch.float64)
    ho, wo = hw  # padding 1, stride 1
    offset = torch.full((1, 18, ho, wo), value, dtype=torch.float64)
    offset[:, 1::2] *= -0.25
    mask = torch.rand(1, 9, ho, wo, generator=g, dtype=torch.float64) if masked else None
    if ho * wo == 0:  # its documented answer: an error that says why
        with pytest.raises(ValueError, match="the output would be empty"):
            ops.deform_conv2d(x, offset, weight, padding=1, mask=mask)
        return
    ours = _check(lambda t: ops.deform_conv2d(t, offset, weight, padding=1, mask=mask), x, layout)
    torch.testing.assert_close(ours, torchvision.ops.deform_conv2d(x, offset, weight, padding=1, mask=mask))


@given(S.boxes(max_n=60), S.layouts)
def test_nms_at_1e9_pixels_equals_torchvision(boxes, layout):
    scores = torch.linspace(1, 0.1, boxes.shape[0])
    keep = ops.nms(boxes, scores, 0.5)
    assert torch.equal(keep, torchvision.ops.nms(boxes, scores, 0.5))
    strided = S.layout(boxes[None, None], "strided" if layout != "contiguous" else layout)[0, 0]
    assert torch.equal(ops.nms(strided, scores, 0.5), keep)


def test_100k_boxes():
    g = torch.Generator().manual_seed(0)
    k = 100_000
    xy = torch.rand(k, 2, generator=g) * 60 - 10
    wh = torch.rand(k, 2, generator=g) * torch.tensor([1.0, 1e9])[torch.randint(0, 2, (k, 1), generator=g)]
    rois = torch.cat([torch.randint(0, 2, (k, 1), generator=g).float(), xy, xy + wh], 1)
    x = torch.randn(2, 4, 16, 16, generator=g)
    for fn in (lambda t: ops.ps_roi_align(t, rois, 2, 0.5), lambda t: ops.ps_roi_pool(t, rois, 2, 0.5)):
        out, grad = _grad(fn, x)
        assert out.shape == (k, 1, 2, 2) and torch.isfinite(out).all() and torch.isfinite(grad).all()
    boxes = rois[:, 1:]
    scores = torch.rand(k, generator=g)
    keep = ops.batched_nms(boxes, scores, torch.randint(0, 50, (k,), generator=g), 0.7)
    assert keep.numel() > 0 and torch.isin(keep, torch.arange(k)).all()


@pytest.mark.parametrize("shape", [(1, 9, 0, 8), (1, 9, 8, 0)])
def test_zero_size_map_modules(shape):
    x = torch.rand(*shape)
    rois = torch.tensor([[0.0, 0, 0, 4, 4]])
    for m in (ops.PSRoIAlign(3, 1.0, -1), ops.PSRoIPool(3, 1.0)):
        assert torch.equal(m(x, rois), torch.zeros(1, 1, 3, 3))
