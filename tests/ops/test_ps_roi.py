"""Position-sensitive RoI pooling: torchvision where it is right, slow references
where it is not (and for the deformable op), gradcheck, opcheck, bad input."""

import subprocess
import sys

import pytest
import torch
from tests.peers import torchvision
from hypothesis import given
from hypothesis import strategies as st

from scalekit import ops
from tests.ops.ps_roi_reference import ref_deform_ps_roi_pool, ref_ps_roi_align, ref_ps_roi_pool


def _rois(k, n_img, extent, seed, dtype=torch.float64, min_size=0.0, max_size=None, low=None):
    """k RoIs in image coordinates spread over [low, extent], some partly outside."""
    g = torch.Generator().manual_seed(seed)
    low = -0.2 * extent if low is None else low
    max_size = extent * 0.8 if max_size is None else max_size
    xy = low + torch.rand(k, 2, generator=g, dtype=torch.float64) * (extent - low)
    wh = min_size + torch.rand(k, 2, generator=g, dtype=torch.float64) * (max_size - min_size)
    idx = torch.randint(0, n_img, (k, 1), generator=g).to(torch.float64)
    return torch.cat([idx, xy, xy + wh], 1).to(dtype)


def _input(n, c, h, w, seed, dtype=torch.float64, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, h, w, generator=g, dtype=torch.float64).to(dtype).requires_grad_(requires_grad)


def _grads(fn, *tensors):
    out = fn(*tensors)
    weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)
    leaves = [t for t in tensors if t.requires_grad]
    loss = (out * weights).sum() + sum(0 * t.sum() for t in leaves)  # defined even with no RoIs
    return torch.autograd.grad(loss, leaves)


class TestPSRoIPool:
    def test_whole_map_pools_every_pixel(self):
        x = torch.arange(25.0).reshape(1, 1, 5, 5)
        box = torch.tensor([[0.0, 0, 0, 5, 5]])
        assert ops.ps_roi_pool(x, box, 1).item() == 12.0
        assert torchvision.ops.ps_roi_pool(x, box, 1).item() == 9.0  # its defect: the top-left 4x4 only

    @given(seed=st.integers(0, 2**16), scale=st.sampled_from([1.0, 0.5, 0.25, 1 / 3]),
           size=st.sampled_from([(1, 1), (2, 2), (3, 2)]), k=st.integers(0, 6))
    def test_equals_reference_and_its_gradient(self, seed, scale, size, k):
        ph, pw = size
        x = _input(2, 2 * ph * pw, 7, 9, seed, requires_grad=True)
        rois = _rois(k, 2, 10 / scale, seed)
        out = ops.ps_roi_pool(x, rois, size, scale)
        torch.testing.assert_close(out, ref_ps_roi_pool(x, rois, ph, pw, scale))
        torch.testing.assert_close(
            _grads(lambda t: ops.ps_roi_pool(t, rois, size, scale), x)[0],
            _grads(lambda t: ref_ps_roi_pool(t, rois, ph, pw, scale), x)[0],
        )

    def test_equals_torchvision_away_from_the_last_row_and_column(self, device):
        x = _input(2, 3 * 49, 20, 30, 0, torch.float32).to(device)
        rois = _rois(80, 2, 40, 1, torch.float32, low=0.0, max_size=10.0)
        rois[:, 3:] = rois[:, 3:].clamp(max=(19 - 1) / 0.5)  # rounded ends stay <= H - 1 at scale 0.5
        rois = rois.to(device)
        torch.testing.assert_close(ops.ps_roi_pool(x, rois, 7, 0.5), torchvision.ops.ps_roi_pool(x, rois, 7, 0.5))

    def test_gradient_equals_torchvision_everywhere(self):
        # torchvision's backward already pools every covered pixel: it is the
        # gradient of our forward, borders included.
        x = _input(2, 2 * 9, 12, 12, 3, requires_grad=True)
        rois = _rois(30, 2, 24, 4)
        ours = _grads(lambda t: ops.ps_roi_pool(t, rois, 3, 0.5), x)[0]
        theirs = _grads(lambda t: torchvision.ops.ps_roi_pool(t, rois, 3, 0.5), x)[0]
        torch.testing.assert_close(ours, theirs)

    def test_gradcheck_with_boxes_touching_the_last_row_and_column(self):
        x = _input(1, 4, 5, 5, 5, requires_grad=True)
        rois = torch.tensor([[0.0, 0, 0, 5, 5], [0, 2, 1, 5, 5], [0, 3.4, 3.6, 4.6, 4.4]], dtype=torch.float64)
        assert torch.autograd.gradcheck(lambda t: ops.ps_roi_pool(t, rois, 2), (x,))

    def test_rounds_half_away_from_zero(self):
        # 2.5 rounds to 3 in C++ (and here); Python's round() would give 2.
        x = torch.arange(36.0).reshape(1, 1, 6, 6)
        out = ops.ps_roi_pool(x, torch.tensor([[0.0, 2.5, 0, 6, 6]]), 1)
        assert out.item() == x[0, 0, :, 3:].mean().item()


class TestPSRoIAlign:
    @given(seed=st.integers(0, 2**16), scale=st.sampled_from([1.0, 0.5, 0.3]),
           sampling_ratio=st.sampled_from([-1, 1, 2, 3]), size=st.sampled_from([(1, 1), (2, 3)]),
           k=st.integers(0, 5))
    def test_equals_torchvision_forward_and_gradient(self, seed, scale, sampling_ratio, size, k):
        x = _input(2, 2 * size[0] * size[1], 6, 8, seed, requires_grad=True)
        rois = _rois(k, 2, 10 / scale, seed, min_size=0.5)
        ours = lambda t: ops.ps_roi_align(t, rois, size, scale, sampling_ratio)  # noqa: E731
        theirs = lambda t: torchvision.ops.ps_roi_align(t, rois, size, scale, sampling_ratio)  # noqa: E731
        torch.testing.assert_close(ours(x), theirs(x))
        torch.testing.assert_close(_grads(ours, x)[0], _grads(theirs, x)[0])

    @given(seed=st.integers(0, 2**16), aligned=st.booleans(), sampling_ratio=st.sampled_from([-1, 2]),
           k=st.integers(0, 4))
    def test_equals_reference_including_degenerate_boxes(self, seed, aligned, sampling_ratio, k):
        x = _input(2, 2 * 4, 5, 6, seed, requires_grad=True)
        rois = _rois(k, 2, 8, seed, min_size=0.0, max_size=3.0)
        rois[::2, 3] = rois[::2, 1]  # zero width
        out = ops.ps_roi_align(x, rois, 2, 1.0, sampling_ratio, aligned)
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out, ref_ps_roi_align(x, rois, 2, 2, 1.0, sampling_ratio, aligned))
        torch.testing.assert_close(
            _grads(lambda t: ops.ps_roi_align(t, rois, 2, 1.0, sampling_ratio, aligned), x)[0],
            _grads(lambda t: ref_ps_roi_align(t, rois, 2, 2, 1.0, sampling_ratio, aligned), x)[0],
        )

    def test_zero_size_boxes_are_finite(self):
        x = torch.arange(25.0).reshape(1, 1, 5, 5)
        box = torch.tensor([[0.0, 2, 2, 2, 4]])
        assert torch.isnan(torchvision.ops.ps_roi_align(x, box, 1)).all()  # its defect
        assert ops.ps_roi_align(x, box, 1).item() == 0.0  # roi_align's answer

    @pytest.mark.parametrize("aligned", [True, False])
    def test_one_channel_per_bin_is_roi_align(self, aligned, device):
        # Repeating each channel once per bin position turns PSRoIAlign into RoIAlign.
        x = _input(2, 3, 15, 20, 6, torch.float32).to(device)
        rois = _rois(40, 2, 30, 7, torch.float32).to(device)
        expected = torchvision.ops.roi_align(x, rois, (3, 4), 0.6, 2, aligned=aligned)
        ours = ops.ps_roi_align(x.repeat_interleave(12, dim=1), rois, (3, 4), 0.6, 2, aligned=aligned)
        torch.testing.assert_close(ours, expected)

    def test_gradcheck(self):
        x = _input(2, 8, 6, 7, 8, requires_grad=True)
        rois = _rois(6, 2, 9, 9, min_size=1.0)
        for aligned in (True, False):
            assert torch.autograd.gradcheck(lambda t: ops.ps_roi_align(t, rois, 2, 0.8, -1, aligned), (x,))

    @pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
    def test_lower_precision(self, dtype, device):
        x = _input(2, 2 * 9, 10, 10, 10)
        rois = _rois(20, 2, 20, 11)
        expected = ops.ps_roi_align(x, rois, 3, 0.5)
        out = ops.ps_roi_align(x.to(dtype).to(device), rois.to(dtype).to(device), 3, 0.5)
        assert out.dtype == dtype
        tol = {torch.float16: 1e-2, torch.bfloat16: 5e-2, torch.float32: 1e-5}[dtype]
        torch.testing.assert_close(out.cpu().double(), expected, atol=tol, rtol=tol)


class TestDeformPSRoIPool:
    @given(seed=st.integers(0, 2**16), group=st.sampled_from([(2, 2), (1, 1), (2, 1)]),
           part=st.sampled_from([(2, 2), (1, 1), (1, 2)]), spp=st.sampled_from([1, 2, 3]),
           trans_std=st.sampled_from([0.1, 0.5, 2.0]), k=st.integers(1, 3))
    def test_equals_reference_forward_and_both_gradients(self, seed, group, part, spp, trans_std, k):
        x = _input(2, 2 * group[0] * group[1], 6, 7, seed, requires_grad=True)
        rois = _rois(k, 2, 8, seed, min_size=0.0)
        g = torch.Generator().manual_seed(seed)
        offset = (torch.randn(k, 2, *part, generator=g, dtype=torch.float64) * 1.5).requires_grad_()
        args = ((2, 2), 1.0, group, part, spp, trans_std)
        ours = lambda t, o: ops.deform_ps_roi_pool(t, rois, o, *args)  # noqa: E731
        ref = lambda t, o: ref_deform_ps_roi_pool(t, rois, o, 2, 2, 1.0, group, part, spp, trans_std)  # noqa: E731
        torch.testing.assert_close(ours(x, offset), ref(x, offset))
        for a, b in zip(_grads(ours, x, offset), _grads(ref, x, offset)):
            torch.testing.assert_close(a, b)

    def test_zero_offsets_equal_ps_roi_align_inside_the_map(self):
        x = _input(2, 3 * 49, 20, 24, 12)
        rois = _rois(30, 2, 40, 13, low=2.0, min_size=0.2, max_size=20.0)  # >= 0.1 px at scale 0.5
        rois[:, 3:] = rois[:, 3:].clamp(max=40.0)  # samples stay on the 20 x 24 map at scale 0.5
        expected = ops.ps_roi_align(x, rois, 7, 0.5, sampling_ratio=3, aligned=True)
        assert torch.equal(ops.deform_ps_roi_pool(x, rois, None, 7, 0.5, sample_per_part=3), expected)
        zeros = torch.zeros(30, 2, 7, 7, dtype=torch.float64)
        assert torch.equal(ops.deform_ps_roi_pool(x, rois, zeros, 7, 0.5, sample_per_part=3), expected)

    def test_samples_pushed_off_the_map_are_skipped(self):
        x = torch.ones(1, 1, 4, 4, dtype=torch.float64)
        box = torch.tensor([[0.0, 0, 0, 4, 4]], dtype=torch.float64)
        far = torch.tensor([[[[100.0]], [[0.0]]]], dtype=torch.float64)  # 100 * 0.1 * 4 px to the right
        assert ops.deform_ps_roi_pool(x, box, far, 1, sample_per_part=2).item() == 0.0
        half = torch.tensor([[[[0.5]], [[0.0]]]], dtype=torch.float64)  # half the samples leave the map
        assert ops.deform_ps_roi_pool(x, box, half, 1, sample_per_part=2, trans_std=1.0).item() == 1.0

    @pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), 1e300])
    def test_non_finite_offsets(self, bad, device):
        # Cell (0, 1) of the 2x2 offset grid gets `bad` as its x offset: a NaN
        # makes its bin NaN (as a NaN input would), an infinite or huge offset
        # moves it off the map (0); the other bins pool as without offsets.
        x = _input(1, 4, 5, 5, 14).to(device).requires_grad_()
        box = torch.tensor([[0.0, 0, 0, 4, 4]], dtype=torch.float64, device=device)
        offset = torch.zeros(1, 2, 2, 2, dtype=torch.float64, device=device)
        offset[0, 0, 0, 1] = bad
        offset.requires_grad_()
        out = ops.deform_ps_roi_pool(x, box, offset, 2)
        plain = ops.deform_ps_roi_pool(x.detach(), box, None, 2)
        cell = torch.zeros_like(out, dtype=torch.bool)
        cell[0, 0, 0, 1] = True
        assert torch.equal(out.detach()[~cell], plain[~cell])
        if bad != bad:
            assert out[cell].isnan().all()
        else:
            assert out[cell].item() == 0.0
        gx, go = torch.autograd.grad(out[~cell].sum(), (x, offset))
        assert torch.isfinite(gx).all()
        nan_cell = torch.zeros_like(go, dtype=torch.bool)
        if bad != bad:
            nan_cell[0, :, 0, 1] = True
        assert torch.equal(go.isnan(), nan_cell)

    def test_zero_trans_std_ignores_even_infinite_offsets_but_not_nan(self):
        x = _input(1, 4, 5, 5, 14)
        box = torch.tensor([[0.0, 0, 0, 4, 4]], dtype=torch.float64)
        plain = ops.deform_ps_roi_pool(x, box, None, 2)
        inf = torch.full((1, 2, 2, 2), float("inf"), dtype=torch.float64)
        assert torch.equal(ops.deform_ps_roi_pool(x, box, inf, 2, trans_std=0.0), plain)
        assert ops.deform_ps_roi_pool(x, box, inf * 0, 2, trans_std=0.0).isnan().all()

    def test_gradcheck(self):
        x = _input(2, 2 * 4, 6, 6, 15, requires_grad=True)
        rois = _rois(3, 2, 7, 16, min_size=1.0)
        offset = (torch.randn(3, 2, 2, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)).requires_grad_()
        assert torch.autograd.gradcheck(
            lambda t, o: ops.deform_ps_roi_pool(t, rois, o, 2, 1.0, sample_per_part=2, trans_std=0.3), (x, offset)
        )

    def test_module_starts_without_offsets_and_learns_them(self):
        torch.manual_seed(0)
        pool = ops.DeformPSRoIPoolPack(out_channels=2, output_size=3, spatial_scale=0.5, sample_per_part=2)
        x = torch.randn(1, 18, 16, 16)
        boxes = torch.tensor([[0.0, 4, 4, 20, 24]])
        plain = ops.deform_ps_roi_pool(x, boxes, None, 3, 0.5, sample_per_part=2)
        assert torch.equal(pool(x, boxes), plain)
        pool(x, boxes).sum().backward()
        assert pool.offset_fc[-1].weight.grad.abs().sum() > 0  # offsets receive gradient


@pytest.mark.parametrize("op", ["pool", "align", "deform"])
def test_opcheck(op, device):
    x = _input(2, 2 * 9, 8, 9, 17, torch.float32).to(device).requires_grad_()
    rois = _rois(5, 2, 16, 18, torch.float32).to(device)
    if op == "pool":
        calls = [(torch.ops.scalekit.ps_roi_pool.default, (x, rois, 0.5, 3, 3))]
    elif op == "align":
        calls = [(torch.ops.scalekit.ps_roi_align.default, (x, rois, 0.5, 3, 3, s, a)) for s, a in [(-1, True), (2, False)]]
    else:
        offset = torch.randn(5, 2, 3, 3, device=device).requires_grad_()
        calls = [(torch.ops.scalekit.deform_ps_roi_pool.default, (x, rois, o, 0.5, 3, 3, 3, 3, 3, 3, 2, 0.1))
                 for o in (offset, None)]
    for fn, args in calls:
        torch.library.opcheck(fn, args)
        torch.library.opcheck(fn, (args[0], args[1][:0]) + args[2:] if op != "deform" else
                              (args[0], args[1][:0], None) + args[3:])


def test_boxes_entirely_off_the_map_pool_to_zero_and_equal_torchvision():
    x = _input(1, 4, 5, 5, 24, requires_grad=True)
    rois = torch.tensor([[0.0, 100, 100, 120, 130], [0, -50, -40, -20, -10]], dtype=torch.float64)
    for ours, theirs in ((ops.ps_roi_align, torchvision.ops.ps_roi_align), (ops.ps_roi_pool, None)):
        out = ours(x, rois, 2)
        assert torch.equal(out, torch.zeros_like(out))
        if theirs is not None:
            torch.testing.assert_close(out, theirs(x, rois, 2))
        (grad,) = torch.autograd.grad(out.sum(), x)
        assert torch.equal(grad, torch.zeros_like(grad))
    offset = torch.zeros(2, 2, 2, 2, dtype=torch.float64)
    assert torch.equal(ops.deform_ps_roi_pool(x, rois, offset, 2), torch.zeros(2, 1, 2, 2, dtype=torch.float64))


def test_list_of_boxes_and_empty_inputs():
    x = _input(2, 4, 6, 6, 19)
    boxes = [torch.tensor([[0.0, 0, 4, 4]], dtype=torch.float64), torch.tensor([[1.0, 1, 5, 5], [0, 0, 2, 2]], dtype=torch.float64)]
    rois = torch.tensor([[0.0, 0, 0, 4, 4], [1, 1, 1, 5, 5], [1, 0, 0, 2, 2]], dtype=torch.float64)
    for fn in (ops.ps_roi_pool, ops.ps_roi_align):
        assert torch.equal(fn(x, boxes, 2), fn(x, rois, 2))
        assert fn(x, rois[:0], 2).shape == (0, 1, 2, 2)
        assert fn(x, [], 2).shape == (0, 1, 2, 2)


def test_torch_compile_fullgraph_with_backward():
    x = _input(2, 2 * 9, 8, 9, 20, torch.float32, requires_grad=True)
    rois = _rois(6, 2, 16, 21, torch.float32)

    @torch.compile(fullgraph=True)
    def f(x, rois):
        return ops.ps_roi_align(x, rois, 3, 0.5).sum() + ops.ps_roi_pool(x, rois, 3, 0.5).sum()

    f(x, rois).backward()
    expected = torch.autograd.grad(ops.ps_roi_align(x, rois, 3, 0.5).sum() + ops.ps_roi_pool(x, rois, 3, 0.5).sum(), x)[0]
    torch.testing.assert_close(x.grad, expected)


def test_cpu_backward_is_deterministic():
    x = _input(2, 3 * 49, 20, 20, 22, torch.float32, requires_grad=True)
    rois = _rois(200, 2, 40, 23, torch.float32)
    grads = [_grads(lambda t: ops.ps_roi_align(t, rois, 7, 0.5), x)[0] for _ in range(2)]
    assert torch.equal(grads[0], grads[1])


class TestBadInput:
    x = torch.zeros(2, 8, 5, 5)
    rois = torch.tensor([[0.0, 0, 0, 2, 2]])

    def test_channels_not_divisible(self):
        with pytest.raises(ValueError, match=r"input channels \(8\) must be divisible by 3 \* 3"):
            ops.ps_roi_align(self.x, self.rois, 3)
        with pytest.raises(ValueError, match=r"input channels \(8\) must be divisible by 3 \* 3"):
            ops.deform_ps_roi_pool(self.x, self.rois, None, 2, group_size=3)

    def test_box_shapes(self):
        with pytest.raises(ValueError, match=r"boxes must be a \[K, 5\] tensor"):
            ops.ps_roi_pool(self.x, torch.zeros(3, 4), 2)
        with pytest.raises(ValueError, match=r"boxes\[1\] must have shape \[L, 4\]"):
            ops.ps_roi_pool(self.x, [torch.zeros(1, 4), torch.zeros(2, 5)], 2)

    @pytest.mark.parametrize("index", [2.0, -1.0, 0.5])
    def test_batch_index_out_of_range(self, index, device):
        rois = torch.tensor([[0.0, 0, 0, 2, 2], [index, 0, 0, 2, 2]], device=device)
        for fn in (ops.ps_roi_pool, ops.ps_roi_align):
            with pytest.raises(ValueError, match=r"boxes\[1\] = .* integral batch index in \[0, 2\)"):
                fn(self.x.to(device), rois, 2)

    def test_non_finite_boxes(self):
        with pytest.raises(ValueError, match=r"boxes\[0\] .* must have finite coordinates"):
            ops.ps_roi_pool(self.x, torch.tensor([[0.0, 0, 0, float("nan"), 2]]), 2)

    def test_offset_shape_and_input(self):
        with pytest.raises(ValueError, match=r"offset must have shape \[K, 2, part_h, part_w\] = \[1, 2, 2, 2\]"):
            ops.deform_ps_roi_pool(self.x, self.rois, torch.zeros(1, 2, 3, 3), 2)
        with pytest.raises(ValueError, match=r"input must have shape \[N, C, H, W\]"):
            ops.ps_roi_align(self.x[0], self.rois, 2)
        with pytest.raises(ValueError, match="output_size must be >= 1, got 0"):
            ops.ps_roi_align(self.x, self.rois, 0)
        with pytest.raises(ValueError, match="spatial_scale must be > 0"):
            ops.ps_roi_align(self.x, self.rois, 2, spatial_scale=0)
        with pytest.raises(ValueError, match="boxes must be on the device of input"):
            ops.ps_roi_align(self.x, self.rois.to("meta"), 2)

    def test_direct_op_calls_are_checked(self):
        with pytest.raises(ValueError, match=r"boxes\[0\] .* integral batch index in \[0, 2\)"):
            torch.ops.scalekit.ps_roi_pool(self.x, torch.tensor([[5.0, 0, 0, 2, 2]]), 1.0, 2, 2)
        # ValueError for a wrong dtype too: the stable ABI carries no TypeError.
        with pytest.raises(ValueError, match="boxes must have the dtype of input"):
            torch.ops.scalekit.ps_roi_align(self.x, self.rois.double(), 1.0, 2, 2, -1, True)


class TestExtremeGeometry:
    """Zero-size maps and huge boxes: an answer, never a crash or an allocation
    that grows with the box (torchvision segfaults on the first)."""

    @pytest.mark.parametrize("hw", [(0, 8), (8, 0), (0, 0)])
    def test_zero_size_maps_pool_to_zero_with_zero_gradient(self, hw):
        x = torch.rand(2, 9, *hw, dtype=torch.float64, requires_grad=True)
        rois = torch.tensor([[0.0, 0, 0, 4, 4], [1, -2, -3, 9, 9]], dtype=torch.float64)
        offset = torch.randn(2, 2, 3, 3, dtype=torch.float64, requires_grad=True)
        calls = [lambda t: ops.ps_roi_align(t, rois, 3), lambda t: ops.ps_roi_align(t, rois, 3, 1.0, 2, True),
                 lambda t: ops.ps_roi_pool(t, rois, 3), lambda t: ops.deform_ps_roi_pool(t, rois, offset, 3),
                 ops.PSRoIAlign(3, 1.0, -1).forward.__get__, ops.PSRoIPool(3, 1.0).forward.__get__]
        for call in calls[:4]:
            out = call(x)
            assert out.shape == (2, 1, 3, 3) and torch.equal(out, torch.zeros_like(out))
            grad = torch.autograd.grad(out.sum(), x)[0]
            assert grad.shape == x.shape
        for module in (ops.PSRoIAlign(3, 1.0, -1), ops.PSRoIPool(3, 1.0)):
            assert torch.equal(module(x, rois), torch.zeros(2, 1, 3, 3, dtype=torch.float64))
        (g_off,) = torch.autograd.grad(ops.deform_ps_roi_pool(x, rois, offset, 3).sum(), offset)
        assert torch.equal(g_off, torch.zeros_like(g_off))

    @pytest.mark.parametrize("peer", ["ps_roi_align", "roi_align", "roi_align_aligned"])
    @pytest.mark.parametrize("box", [[0.0, -3000, -2500, 12, 15], [0.0, -1200, 3, 2400, 9], [0.0, 2, -900.5, 7, 1800]])
    def test_boxes_much_larger_than_the_map_equal_torchvision(self, box, peer):
        # Most samples fall off the map: the kernel skips them without visiting
        # them, and must still give torchvision's numbers, forward and backward.
        rois = torch.tensor([box], dtype=torch.float64)
        if peer == "ps_roi_align":
            x = _input(1, 9, 10, 12, 31, requires_grad=True)
            ours = lambda t: ops.ps_roi_align(t, rois.to(t.dtype), 3, 1.0, -1)  # noqa: E731
            theirs = lambda t: torchvision.ops.ps_roi_align(t, rois.to(t.dtype), 3, 1.0, -1)  # noqa: E731
        else:  # one bin: ps_roi_align is roi_align, in both of its conventions
            aligned = peer == "roi_align_aligned"
            x = _input(1, 2, 10, 12, 31, requires_grad=True)
            ours = lambda t: ops.ps_roi_align(t, rois.to(t.dtype), 1, 1.0, -1, aligned)  # noqa: E731
            theirs = lambda t: torchvision.ops.roi_align(t, rois.to(t.dtype), 1, 1.0, -1, aligned)  # noqa: E731
            x = x[:, :1].detach().requires_grad_()
        torch.testing.assert_close(ours(x), theirs(x))
        torch.testing.assert_close(_grads(ours, x)[0], _grads(theirs, x)[0])
        xf = x.detach().float().requires_grad_()
        torch.testing.assert_close(ours(xf), theirs(xf), atol=1e-5, rtol=1e-4)

    def test_memory_and_time_do_not_grow_with_the_box(self):
        # 1e9-pixel coordinates with the adaptive grid (3e8 samples per bin
        # side): the process is capped at 6 GiB of address space, which
        # per-sample tables would exceed many times over (under ASan, whose
        # shadow memory needs terabytes of address space, the peak resident
        # size is checked instead).
        code = (
            "import os, resource, time, torch\n"
            "if 'libasan' not in os.environ.get('LD_PRELOAD', ''):\n"
            "    resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))\n"
            "from scalekit import ops\n"
            "x = torch.rand(2, 9, 16, 16, requires_grad=True)\n"
            "rois = torch.tensor([[0., 0, 0, 1e9, 1e9], [1, -1e9, -1e9, 8, 8], [0, -5e8, 3, 5e8, 1e9],\n"
            "                     [0, -3e38, 0, 3e38, 5]])\n"  # its width overflows float32: no samples
            "t = time.perf_counter()\n"
            "out = ops.ps_roi_align(x, rois, 3, 1.0, -1)\n"
            "out.sum().backward()\n"
            "assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()\n"
            "offset = torch.full((4, 2, 3, 3), 1e6)\n"
            "d = ops.deform_ps_roi_pool(x, rois, offset, 3, trans_std=0.1)\n"
            "assert torch.isfinite(d).all()\n"
            "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
        )
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        seconds, peak_kib = r.stdout.strip().splitlines()[-1].split()
        assert float(seconds) < 30.0 and int(peak_kib) < 3 << 20
