"""Mixed precision: every op under torch.autocast (CPU bfloat16; CUDA float16 when
there is a GPU) matches float32, returns the feature dtype, and keeps boxes in float32."""

import pytest
import torch

from scalekit import _ext, ops

CPU_BF16 = dict(device_type="cpu", dtype=torch.bfloat16)


def _features(c=2 * 9, h=16, w=16, seed=0):
    return torch.randn(2, c, h, w, generator=torch.Generator().manual_seed(seed))


ROIS = torch.tensor([[0.0, 1.3, 2.7, 11.2, 13.9], [1.0, 0.5, 0.5, 7.25, 9.75]])


def test_every_op_has_autocast_kernels():
    for name in ("nms", "soft_nms", "greedy_nmm", "nmm", "ps_roi_pool", "ps_roi_align", "deform_ps_roi_pool",
                 "deform_conv2d"):
        for key in ("AutocastCPU", "AutocastCUDA"):
            assert torch._C._dispatch_has_kernel_for_dispatch_key(f"scalekit::{name}", key), (name, key)


@pytest.mark.parametrize("name", ["ps_roi_pool", "ps_roi_align", "deform_ps_roi_pool"])
def test_pooling_ops_under_autocast_take_bfloat16_features_with_float32_rois(name):
    # Straight to torch.ops: without the autocast kernel the kernel's dtype check rejects the mix.
    x = _features().bfloat16()
    args = {"ps_roi_pool": (1.0, 3, 3), "ps_roi_align": (1.0, 3, 3, 2, True),
            "deform_ps_roi_pool": (None, 1.0, 3, 3, 3, 3, 3, 3, 2, 0.1)}[name]
    op = getattr(torch.ops.scalekit, name)

    def call(feats):
        return op(feats, ROIS, *args)

    with torch.autocast(**CPU_BF16):
        out = call(x)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, call(x.float()).bfloat16(), rtol=0, atol=0)


def test_rois_stay_float32_with_bfloat16_features():
    # The example: in bfloat16 the box (1001, 1003, 1901, 1907) is (1000, 1004, 1904, 1904).
    box = torch.tensor([[0.0, 1001, 1003, 1901, 1907]])
    assert box.bfloat16().float()[0, 1:].tolist() == [1000, 1004, 1904, 1904]
    x = _features(h=64, w=64, seed=1).bfloat16()
    kw = dict(output_size=3, spatial_scale=1 / 32, sampling_ratio=2)
    exact = ops.ps_roi_align(x.float(), box, **kw)
    rounded = ops.ps_roi_align(x.float(), box.bfloat16().float(), **kw)
    assert not torch.allclose(exact, rounded, atol=1e-2)  # the rounding matters here
    for context in (torch.autocast(**CPU_BF16), torch.autocast("cpu", enabled=False)):
        with context:
            out = ops.ps_roi_align(x, box, **kw)
        assert out.dtype == torch.bfloat16
        torch.testing.assert_close(out, exact.bfloat16(), rtol=0, atol=0)


def test_deform_conv_under_autocast_matches_float32():
    torch.manual_seed(0)
    layer = ops.DeformConv2dPack(4, 8, 3, padding=1, modulated=True)
    with torch.no_grad():
        layer.offset_conv.weight.normal_(0, 0.1)
    x = torch.randn(2, 4, 12, 12)
    ref = layer(x)
    with torch.autocast(**CPU_BF16):
        out = layer(x)  # offset_conv's output is bfloat16, x is float32
        offset = torch.randn(2, 18, 12, 12).bfloat16()
        mixed = ops.DeformConv2d(4, 8, 3, padding=1)(x, offset)
    assert out.dtype == torch.float32 and mixed.dtype == torch.float32
    torch.testing.assert_close(out, ref, rtol=0.05, atol=0.05)  # offsets rounded to bfloat16 by offset_conv
    out.sum().backward()
    assert layer.offset_conv.weight.grad is not None


def test_nms_family_under_autocast_runs_in_float32():
    g = torch.Generator().manual_seed(3)
    xy = torch.rand(200, 2, generator=g) * 100
    boxes = torch.cat([xy, xy + 5 + torch.rand(200, 2, generator=g) * 30], 1).bfloat16()
    scores = torch.rand(200, generator=g).bfloat16()
    with torch.autocast(**CPU_BF16):
        keep = torch.ops.scalekit.nms(boxes, scores, None, 0.5, 0.0)
        soft_keep, soft_scores = torch.ops.scalekit.soft_nms(boxes, scores, None, 0.3, 0.5, 0.001, "gaussian", 0.0)
    assert torch.equal(keep, ops.nms(boxes.float(), scores.float(), 0.5))
    ref_keep, ref_scores = ops.soft_nms(boxes.float(), scores.float(), 0.3, 0.5, 0.001, "gaussian")
    assert torch.equal(soft_keep, ref_keep)
    assert soft_scores.dtype == torch.bfloat16
    torch.testing.assert_close(soft_scores, ref_scores.bfloat16(), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["greedy_nmm", "nmm"])
def test_merges_under_autocast_run_in_float32_and_return_the_input_dtypes(name):
    g = torch.Generator().manual_seed(4)
    xy = torch.rand(200, 2, generator=g) * 100
    boxes = torch.cat([xy, xy + 5 + torch.rand(200, 2, generator=g) * 30], 1).bfloat16()
    scores = torch.rand(200, generator=g).bfloat16()
    op = getattr(torch.ops.scalekit, name)
    with torch.autocast(**CPU_BF16):
        keep, merged, merged_scores = op(boxes, scores, None, 0.4, "ios")
    ref_keep, ref_merged, _ = op(boxes.float(), scores.float(), None, 0.4, "ios")
    assert torch.equal(keep, ref_keep) and len(keep) < 200
    assert merged.dtype == torch.bfloat16 and torch.equal(merged, ref_merged.bfloat16())
    assert merged_scores.dtype == torch.bfloat16 and torch.equal(merged_scores, scores[keep])


@pytest.mark.cuda
@pytest.mark.skipif(not (torch.cuda.is_available() and _ext.has_cuda_kernels()), reason="needs CUDA kernels")
def test_cuda_float16_autocast_matches_float32():
    x, rois = _features().cuda(), ROIS.cuda()
    with torch.autocast("cuda", dtype=torch.float16):
        pooled = ops.ps_roi_align(x.half(), rois, 3, sampling_ratio=2)
        layer = ops.DeformConv2dPack(18, 4, 3, padding=1).cuda()
        conv = layer(x)
        keep = ops.nms(rois[:, 1:].half(), torch.tensor([0.9, 0.8], device="cuda").half(), 0.5)
    torch.testing.assert_close(pooled.float(), ops.ps_roi_align(x.half().float(), rois, 3, sampling_ratio=2),
                               rtol=2e-3, atol=2e-3)
    assert conv.dtype == torch.float32
    torch.testing.assert_close(conv, layer(x), rtol=1e-2, atol=1e-2)
    assert keep.tolist() == [0, 1]
