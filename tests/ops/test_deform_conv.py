"""Deformable convolution v1/v2: torchvision forward and every gradient,
plain conv at zero offsets, golden values, gradcheck, opcheck, bad input."""

import pytest
import torch
import torch.nn.functional as F
from tests.peers import torchvision
from hypothesis import given
from hypothesis import strategies as st

from scalekit import ops


@st.composite
def conv_cases(draw):
    groups = draw(st.sampled_from([1, 2]))
    offset_groups = draw(st.sampled_from([1, 2]))
    c_in = groups * offset_groups * draw(st.integers(1, 2))
    c_out = groups * draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride, padding, dilation = (draw(st.tuples(st.integers(lo, hi), st.integers(lo, hi)))
                                 for lo, hi in ((1, 2), (0, 2), (1, 2)))
    h, w = draw(st.integers(3, 8)), draw(st.integers(3, 8))
    ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    if ho <= 0 or wo <= 0:
        h, w, padding = h + 8, w + 8, (2, 2)
        ho = (h + 4 - dilation[0] * (kh - 1) - 1) // stride[0] + 1
        wo = (w + 4 - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    n = draw(st.integers(1, 2))
    spread = draw(st.sampled_from([0.0, 1.0, 3.0, 50.0]))  # 50: samples far outside the image
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    x = torch.randn(n, c_in, h, w, generator=g, dtype=torch.float64)
    weight = torch.randn(c_out, c_in // groups, kh, kw, generator=g, dtype=torch.float64)
    offset = torch.randn(n, 2 * offset_groups * kh * kw, ho, wo, generator=g, dtype=torch.float64) * spread
    mask = torch.rand(n, offset_groups * kh * kw, ho, wo, generator=g, dtype=torch.float64) if draw(st.booleans()) else None
    bias = torch.randn(c_out, generator=g, dtype=torch.float64) if draw(st.booleans()) else None
    return x, offset, weight, bias, stride, padding, dilation, mask


def _all_grads(fn, x, offset, weight, bias, mask):
    leaves = [t.clone().requires_grad_() if t is not None else None for t in (x, offset, weight, bias, mask)]
    out = fn(*leaves)
    grad = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)
    live = [t for t in leaves if t is not None]
    return out, torch.autograd.grad(out, live, grad)


@given(case=conv_cases())
def test_forward_and_every_gradient_equal_torchvision(case):
    x, offset, weight, bias, stride, padding, dilation, mask = case

    def ours(x, o, w, b, m):
        return ops.deform_conv2d(x, o, w, b, stride, padding, dilation, m)

    def theirs(x, o, w, b, m):
        return torchvision.ops.deform_conv2d(x, o, w, b, stride, padding, dilation, m)

    out, grads = _all_grads(ours, x, offset, weight, bias, mask)
    ref_out, ref_grads = _all_grads(theirs, x, offset, weight, bias, mask)
    torch.testing.assert_close(out, ref_out)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b)


def test_offset_gradient_of_samples_exactly_on_the_border_equals_torchvision():
    # padding 1, 1x1 kernel, zero offsets: the first and last columns sample
    # x = -1 and x = W exactly (read 0); torchvision's offset gradient there is
    # the one-sided slope from the corner on the map. Found by hypothesis.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 1, 3, 3, generator=g, dtype=torch.float64)
    w = torch.randn(1, 1, 1, 1, generator=g, dtype=torch.float64)
    for padding in ((0, 1), (1, 0), (1, 1)):
        ho, wo = 3 + 2 * padding[0], 3 + 2 * padding[1]
        offset = torch.zeros(1, 2, ho, wo, dtype=torch.float64)
        _, ours = _all_grads(lambda x, o, w, b, m: ops.deform_conv2d(x, o, w, padding=padding), x, offset, w, None, None)
        _, theirs = _all_grads(lambda x, o, w, b, m: torchvision.ops.deform_conv2d(x, o, w, padding=padding),
                               x, offset, w, None, None)
        for a, b in zip(ours, theirs):
            torch.testing.assert_close(a, b)


def test_golden_values():
    x = torch.arange(25.0).view(1, 1, 5, 5)
    offset = torch.full((1, 18, 5, 5), 0.5)
    w = torch.ones(1, 1, 3, 3)
    row = ops.deform_conv2d(x, offset, w, padding=1)[0, 0, 0]
    torch.testing.assert_close(row, torch.tensor([30.0, 41.25, 48.75, 45.0, 28.75]))
    half = ops.deform_conv2d(x, offset, w, padding=1, mask=torch.full((1, 9, 5, 5), 0.5))[0, 0, 0]
    assert torch.equal(half, row / 2)


@pytest.mark.parametrize("groups, offset_groups", [(1, 1), (2, 4)])
def test_zero_offsets_and_unit_mask_are_plain_conv(groups, offset_groups, device):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, 12, 10, generator=g).to(device)
    w = torch.randn(6, 8 // groups, 3, 3, generator=g).to(device)
    b = torch.randn(6, generator=g).to(device)
    offset = torch.zeros(2, 2 * offset_groups * 9, 6, 5, device=device)
    mask = torch.ones(2, offset_groups * 9, 6, 5, device=device)
    expected = F.conv2d(x, w, b, stride=2, padding=1, groups=groups)
    torch.testing.assert_close(ops.deform_conv2d(x, offset, w, b, stride=2, padding=1), expected, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ops.deform_conv2d(x, offset, w, b, stride=2, padding=1, mask=mask), expected,
                               atol=1e-4, rtol=1e-4)


def test_gradcheck():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 4, 5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 2, 3, 2, generator=g, dtype=torch.float64, requires_grad=True)
    offset = (torch.randn(1, 2 * 2 * 6, 5, 4, generator=g, dtype=torch.float64) * 0.7).requires_grad_()
    mask = torch.rand(1, 2 * 6, 5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, o, w, b, m: ops.deform_conv2d(x, o, w, b, (1, 2), 1, (1, 1), m), (x, offset, w, b, mask)
    )


@pytest.mark.parametrize("with_mask", [False, True])
def test_opcheck(with_mask, device):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 4, 6, 6, generator=g).to(device).requires_grad_()
    w = torch.randn(4, 2, 3, 3, generator=g).to(device).requires_grad_()
    offset = torch.randn(2, 18, 6, 6, generator=g).to(device).requires_grad_()
    mask = torch.rand(2, 9, 6, 6, generator=g).to(device).requires_grad_() if with_mask else None
    b = torch.randn(4, generator=g).to(device).requires_grad_()
    torch.library.opcheck(torch.ops.scalekit.deform_conv2d.default, (x, w, offset, mask, b, 1, 1, 1, 1, 1, 1, 2, 1))


def test_torch_compile_and_channels_last():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 8, 8, generator=g).to(memory_format=torch.channels_last)
    offset, w = torch.randn(2, 18, 8, 8, generator=g), torch.randn(3, 4, 3, 3, generator=g)
    expected = torchvision.ops.deform_conv2d(x.contiguous(), offset, w, padding=1)
    torch.testing.assert_close(ops.deform_conv2d(x, offset, w, padding=1), expected)
    compiled = torch.compile(lambda x, o, w: ops.deform_conv2d(x, o, w, padding=1).relu().sum(), fullgraph=True)
    torch.testing.assert_close(compiled(x, offset, w), expected.relu().sum())


def test_cpu_backward_is_deterministic():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 16, 12, 12, generator=g, requires_grad=True)
    offset = (torch.randn(2, 18, 12, 12, generator=g) * 2).requires_grad_()
    w = torch.randn(8, 16, 3, 3, generator=g)
    runs = [torch.autograd.grad(ops.deform_conv2d(x, offset, w, padding=1).sum(), (x, offset)) for _ in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(*runs))


def test_infinite_offsets_read_the_zero_padding(device):
    x = torch.randn(1, 2, 5, 5, device=device)
    w = torch.ones(1, 2, 3, 3, device=device)
    bias = torch.tensor([0.25], device=device)
    for bad in (float("inf"), -float("inf"), 1e30):
        out = ops.deform_conv2d(x, torch.full((1, 18, 3, 3), bad, device=device), w, bias)
        assert torch.equal(out, torch.full_like(out, 0.25))


def _one_bad_tap(value, what, device):
    """A 2-channel, 2-offset-group conv in which tap 4 (the centre) of offset group 1 at
    output pixel (1, 2) has `value` as its y offset or its mask."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(1, 2, 5, 5, generator=g, dtype=torch.float64)
    w = torch.randn(3, 2, 3, 3, generator=g, dtype=torch.float64)
    offset = torch.zeros(1, 2 * 2 * 9, 3, 3, dtype=torch.float64)
    mask = torch.ones(1, 2 * 9, 3, 3, dtype=torch.float64)
    if what == "offset":
        offset[0, 2 * (9 + 4), 1, 2] = value
    else:
        mask[0, 9 + 4, 1, 2] = value
    return [t.to(device) for t in (x, w, offset, mask)]


@pytest.mark.parametrize("what,value", [("offset", float("nan")), ("mask", float("nan")), ("mask", float("inf"))])
def test_nan_offsets_and_non_finite_masks_give_nan_where_they_act(what, value, device):
    # As a dense convolution propagates a NaN input: every output channel at
    # that pixel is NaN, every other output is the plain convolution.
    x, w, offset, mask = _one_bad_tap(value, what, device)
    x.requires_grad_(), offset.requires_grad_(), mask.requires_grad_()
    out = ops.deform_conv2d(x, offset, w, mask=mask)
    bad = torch.zeros(1, 3, 3, 3, dtype=torch.bool, device=device)
    bad[0, :, 1, 2] = True
    assert torch.equal(out.isnan(), bad)
    expected = F.conv2d(x.detach(), w)
    torch.testing.assert_close(out.detach()[~bad], expected[~bad])
    # Gradients: NaN for the offset (and mask) of that tap only. The input
    # gradient is finite for a NaN offset (nothing is read or written for it);
    # a NaN mask, like a NaN weight of a dense convolution, turns 0 * NaN into
    # NaN at the four corners its sample reads (channel 1, input rows 2-3, columns 3-4).
    gx, go, gm = torch.autograd.grad(out[~bad].sum(), (x, offset, mask))
    if what == "offset":
        assert torch.isfinite(gx).all()
    else:
        corners = torch.zeros_like(gx, dtype=torch.bool)
        corners[0, 1, 2:4, 3:5] = True
        assert torch.equal(gx.isnan(), corners)
    if what == "offset":
        nan_offset = torch.zeros_like(go, dtype=torch.bool)
        nan_offset[0, 2 * (9 + 4):2 * (9 + 4) + 2, 1, 2] = True
        assert torch.equal(go.isnan(), nan_offset)
        assert gm.isnan().sum() == 1 and gm[0, 9 + 4, 1, 2].isnan()


def test_module_starts_as_plain_conv_and_learns_offsets():
    torch.manual_seed(0)
    for modulated in (False, True):
        layer = ops.DeformConv2dPack(6, 4, 3, padding=1, groups=2, offset_groups=3, modulated=modulated)
        x = torch.randn(2, 6, 9, 9)
        torch.testing.assert_close(layer(x), F.conv2d(x, layer.weight, layer.bias, padding=1, groups=2),
                                   atol=1e-5, rtol=1e-5)
        layer(x).square().sum().backward()
        assert layer.offset_conv.weight.grad.abs().sum() > 0
    assert "offset_groups=3" in repr(layer)


class TestBadInput:
    x = torch.zeros(1, 4, 6, 6)
    w = torch.zeros(2, 4, 3, 3)
    offset = torch.zeros(1, 18, 4, 4)

    def test_shapes(self):
        with pytest.raises(ValueError, match=r"offset must have shape \[N, 2 \* offset_groups \* kH \* kW, H_out, W_out\] = \[1, 18, 6, 6\]"):
            ops.deform_conv2d(self.x, self.offset, self.w, padding=1)
        with pytest.raises(ValueError, match=r"input channels \(4\) must be a multiple of weight.shape\[1\] \(3"):
            ops.deform_conv2d(self.x, self.offset, torch.zeros(2, 3, 3, 3))
        with pytest.raises(ValueError, match=r"offset channels \(17\) must be a positive multiple of 2 \* kH \* kW = 18"):
            ops.deform_conv2d(self.x, torch.zeros(1, 17, 4, 4), self.w)
        with pytest.raises(ValueError, match=r"mask must have shape .* = \[1, 9, 4, 4\]"):
            ops.deform_conv2d(self.x, self.offset, self.w, mask=torch.zeros(1, 9, 3, 3))
        with pytest.raises(ValueError, match=r"bias must have shape \[C_out\] = \[2\]"):
            ops.deform_conv2d(self.x, self.offset, self.w, bias=torch.zeros(3))
        with pytest.raises(ValueError, match="offset channels 36 give offset_groups = 2, which must divide"):
            ops.deform_conv2d(torch.zeros(1, 3, 6, 6), torch.zeros(1, 36, 4, 4), torch.zeros(2, 3, 3, 3))

    def test_types_and_arguments(self):
        with pytest.raises(TypeError, match="input must be a floating point tensor"):
            ops.deform_conv2d(self.x.long(), self.offset, self.w)
        with pytest.raises(TypeError, match="offset must have the dtype of input"):
            ops.deform_conv2d(self.x, self.offset.double(), self.w)
        with pytest.raises(ValueError, match=r"stride must be >= 1, got 0"):
            ops.deform_conv2d(self.x, self.offset, self.w, stride=0)
        with pytest.raises(ValueError, match=r"stride must be positive"):  # the kernel's own check
            torch.ops.scalekit.deform_conv2d(self.x, self.w, self.offset, None, None, 0, 1, 0, 0, 1, 1, 1, 1)
        with pytest.raises(ValueError, match="the output would be empty"):
            ops.deform_conv2d(torch.zeros(1, 4, 2, 2), torch.zeros(1, 18, 1, 1), self.w)


_REPEATED_CALLS = """
import resource, torch
from scalekit import ops
torch.set_num_threads(1)
x = torch.randn(2, 16, 64, 64, requires_grad=True)
offset = torch.zeros(2, 18, 64, 64, requires_grad=True)
w = torch.randn(16, 16, 3, 3, requires_grad=True)
def step():
    ops.deform_conv2d(x, offset, w, padding=1).sum().backward()
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for _ in range(100):
    step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
"""


def test_repeated_calls_hold_no_memory():
    # Each call's buffers (output 0.5 MB, columns, gradients) must be freed: a kernel that
    # drops a reference handed back by the dispatcher keeps them alive (it leaked ~2 MB a call).
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-c", _REPEATED_CALLS], capture_output=True, text=True, env=env, cwd=root,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    grown_mb = float(r.stdout.strip().splitlines()[-1])
    assert grown_mb < 50, f"peak memory grew {grown_mb:.0f} MB over 100 forward + backward calls"
