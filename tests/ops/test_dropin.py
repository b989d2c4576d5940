"""Drop-in for torchvision.ops where we claim it: DeformConv2d's contract and state
dict, FX leaves and torch.export, float16 deform_conv2d on the CPU, the NMS inputs
torchvision accepts (0-d threshold, quantized, empty), and the *Pack modules."""

import math

import pytest
import torch
import torch.nn.functional as F
import torchvision

from scalekit import ops


def _deform_args(seed=0, dtype=torch.float64, n=2):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 6, 5, 4, generator=g, dtype=dtype)
    offset = torch.randn(n, 3 * 2 * 3 * 2, 2, 3, generator=g, dtype=dtype)
    mask = torch.rand(n, 3 * 3 * 2, 2, 3, generator=g, dtype=dtype)
    return x, offset, mask


CONV_KW = dict(stride=(2, 1), padding=(1, 0), dilation=(2, 1), groups=2)


class TestDeformConv2dContract:
    def test_state_dict_loads_both_ways_and_outputs_match_torchvision(self):
        ours = ops.DeformConv2d(6, 2, (3, 2), **CONV_KW).double()
        theirs = torchvision.ops.DeformConv2d(6, 2, (3, 2), **CONV_KW).double()
        assert ours.state_dict().keys() == theirs.state_dict().keys() == {"weight", "bias"}
        ours.load_state_dict(theirs.state_dict())
        x, offset, mask = _deform_args()
        torch.testing.assert_close(ours(x, offset, mask), theirs(x, offset, mask))
        torch.testing.assert_close(ours(x, offset), theirs(x, offset))
        theirs.load_state_dict(ops.DeformConv2d(6, 2, (3, 2), **CONV_KW).double().state_dict())
        assert not torch.equal(theirs.weight, ours.weight)
        ours.load_state_dict(theirs.state_dict())
        torch.testing.assert_close(ours(x, offset, mask), theirs(x, offset, mask))
        no_bias = ops.DeformConv2d(6, 2, 3, bias=False)
        assert no_bias.bias is None and set(no_bias.state_dict()) == {"weight"}

    def test_initialisation_is_conv2d_s(self):
        torch.manual_seed(0)
        layer = ops.DeformConv2d(4, 64, 3)
        bound = 1 / math.sqrt(4 * 9)
        assert layer.weight.abs().max() <= bound and layer.bias.abs().max() <= bound
        assert layer.bias.abs().max() > bound / 2  # not left at zero

    def test_pack_is_a_deform_conv2d_with_offset_conv(self):
        layer = ops.DeformConv2dPack(6, 2, (3, 2), **CONV_KW, offset_groups=3, modulated=True)
        assert isinstance(layer, ops.DeformConv2d)
        assert set(layer.state_dict()) == {"weight", "bias", "offset_conv.weight", "offset_conv.bias"}
        x = torch.randn(1, 6, 9, 8)
        plain = F.conv2d(x, layer.weight, layer.bias, stride=(2, 1), padding=(1, 0), dilation=(2, 1), groups=2)
        torch.testing.assert_close(layer(x), plain, atol=1e-5, rtol=1e-5)
        with pytest.raises(ValueError, match=r"offset_groups \(4\) must be positive and divide in_channels \(6\)"):
            ops.DeformConv2dPack(6, 2, 3, offset_groups=4)
        with pytest.raises(ValueError, match=r"out_channels \(3\) must be divisible by groups \(2\)"):
            ops.DeformConv2d(6, 3, 3, groups=2)


def test_deform_ps_roi_pool_module_takes_offset_and_pack_predicts_it():
    torch.manual_seed(0)
    x, boxes = torch.randn(1, 18, 16, 16), torch.tensor([[0.0, 4, 4, 20, 24]])
    offset = torch.randn(1, 2, 3, 3)
    pool = ops.DeformPSRoIPool(3, 0.5, sample_per_part=2)
    assert not list(pool.parameters())
    assert torch.equal(pool(x, boxes, offset), ops.deform_ps_roi_pool(x, boxes, offset, 3, 0.5, sample_per_part=2))
    pack = ops.DeformPSRoIPoolPack(2, 3, 0.5, sample_per_part=2)
    assert torch.equal(pack(x, boxes), pool(x, boxes, None))  # a fresh Pack pools without offsets
    pack(x, boxes).sum().backward()
    assert pack.offset_fc[-1].weight.grad.abs().sum() > 0


class _Everything(torch.nn.Module):
    """Calls every op from outside scalekit, as a user's model would."""

    def __init__(self):
        super().__init__()
        self.conv = ops.DeformConv2d(18, 4, 3, padding=1)
        self.pool = ops.PSRoIAlign(3, 1.0, sampling_ratio=2)

    def forward(self, x, offset, rois, boxes, scores, labels):
        y = self.conv(x, offset)
        a = self.pool(x, rois)
        b = ops.ps_roi_pool(x, [rois[:, 1:]], 3)
        c = ops.deform_ps_roi_pool(x, rois, None, 3, sample_per_part=2)
        keep = ops.nms(boxes, scores, 0.5)
        bkeep = ops.batched_nms(boxes, scores, labels, 0.5)
        skeep, sscores = ops.soft_nms(boxes, scores)
        return y, a, b, c, keep, bkeep, skeep, sscores


def _inputs():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 18, 8, 8, generator=g)
    offset = torch.randn(1, 18, 8, 8, generator=g)
    rois = torch.tensor([[0.0, 0.5, 1.0, 6.0, 7.5], [0.0, 2.0, 2.0, 5.0, 6.0]])
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]])
    return x, offset, rois, boxes, torch.tensor([0.9, 0.8, 0.7]), torch.tensor([0, 1, 1])


def test_fx_symbolic_trace_keeps_every_op_a_leaf():
    model = _Everything()
    graph = torch.fx.symbolic_trace(model)
    targets = {n.target for n in graph.graph.nodes if n.op == "call_function"}
    for fn in (ops.deform_conv2d, ops.ps_roi_align, ops.ps_roi_pool, ops.deform_ps_roi_pool, ops.nms,
               ops.batched_nms, ops.soft_nms):
        assert fn in targets, fn.__name__
    for ours, traced in zip(model(*_inputs()), graph(*_inputs())):
        assert torch.equal(ours, traced)


def test_torch_export_runs_every_op():
    model = _Everything()
    exported = torch.export.export(model, _inputs())
    for ours, traced in zip(model(*_inputs()), exported.module()(*_inputs())):
        assert torch.equal(ours, traced)


def test_deform_conv2d_float16_on_cpu_matches_float64_and_has_float16_gradients():
    x, offset, mask = _deform_args(n=3)
    weight = torch.randn(2, 3, 3, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    kw = dict(stride=(2, 1), padding=(1, 0), dilation=(2, 1))
    ref = ops.deform_conv2d(x, offset, weight, mask=mask, **kw)
    half = [t.half().requires_grad_() for t in (x, offset, weight, mask)]
    out = ops.deform_conv2d(half[0], half[1], half[2], mask=half[3], **kw)
    assert out.dtype == torch.float16
    torch.testing.assert_close(out.double(), ref, rtol=2e-3, atol=2e-3)
    out.sum().backward()
    wide = [t.detach().double().requires_grad_() for t in half]
    ops.deform_conv2d(wide[0], wide[1], wide[2], mask=wide[3], **kw).sum().backward()
    for h, w in zip(half, wide):
        assert h.grad.dtype == torch.float16
        torch.testing.assert_close(h.grad.double(), w.grad, rtol=1e-2, atol=1e-2)


class TestNMSInputsTorchvisionAccepts:
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])

    def test_zero_dim_tensor_threshold(self):
        for t in (0.5, 0.7):
            assert torch.equal(ops.nms(self.boxes, self.scores, torch.tensor(t)), ops.nms(self.boxes, self.scores, t))
        assert torch.equal(ops.batched_nms(self.boxes, self.scores, torch.tensor([0, 1, 0, 0]), torch.tensor(0.5)),
                           torch.tensor([0, 1, 2]))

    @pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor")
    def test_quantized_same_indices_as_torchvision(self):
        g = torch.Generator().manual_seed(0)
        xy = torch.rand(300, 2, generator=g) * 150
        boxes = torch.cat([xy, xy + 10 + torch.rand(300, 2, generator=g) * 60], 1)
        scores = torch.rand(300, generator=g) * 100
        for scale, zero_point in ((1, 0), (2, 50)):
            qb = torch.quantize_per_tensor(boxes, scale, zero_point, torch.quint8)
            qs = torch.quantize_per_tensor(scores, scale, zero_point, torch.quint8)
            ours = ops.nms(qb, qs, 0.5)
            assert torch.equal(ours, ops.nms(qb.dequantize(), qs.dequantize(), 0.5))
            assert torch.equal(ours, torchvision.ops.nms(qb, qs, 0.5))

    def test_empty_boxes_of_any_dtype(self):
        for boxes in (torch.empty(0, dtype=torch.int64), torch.empty(0, 4)):
            out = ops.batched_nms(boxes, None, None, None)
            assert out.dtype == torch.int64 and out.shape == (0,)
        with pytest.raises(TypeError, match="boxes must be a floating point tensor"):
            ops.batched_nms(self.boxes.long(), self.scores, torch.zeros(4, dtype=torch.int64), 0.5)
