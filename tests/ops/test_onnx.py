"""Every op exported with the default exporter (``dynamo=True``) and run in ONNX
Runtime, against the op itself on the same inputs."""

import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime", reason="ONNX Runtime is the peer these tests run the export in")
pytest.importorskip("onnxscript", reason="the exporter's onnxscript translates the ops")

import scalekit.ops as ops  # noqa: E402
from scalekit.ops import export_onnx  # noqa: E402


def run_onnx(module, args):
    program = export_onnx(module.eval(), args)
    session = ort.InferenceSession(program.model_proto.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {i.name: a.numpy() for i, a in zip(session.get_inputs(), args)}
    return [torch.from_numpy(np.asarray(o)) for o in session.run(None, feeds)]


class Fn(torch.nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, *args):
        return self.fn(*args)


def random_boxes(n, seed, scale=100.0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * scale
    wh = torch.rand(n, 2, generator=g) * scale / 3 + 1
    return torch.cat([xy, xy + wh], 1), torch.randperm(n, generator=g).float() / n  # distinct scores


@pytest.mark.parametrize("pixel_offset", [0.0, 1.0])
def test_nms(pixel_offset):
    boxes, scores = random_boxes(300, 0)
    fn = Fn(lambda b, s: ops.nms(b, s, 0.5, pixel_offset=pixel_offset))
    (keep,) = run_onnx(fn, (boxes, scores))
    assert torch.equal(keep, fn(boxes, scores))


def test_batched_nms_any_category_values():
    boxes, scores = random_boxes(300, 1)
    idxs = torch.tensor([-7, 3, 10 ** 9])[torch.arange(300) % 3]  # negative and huge category values
    fn = Fn(lambda b, s, i: ops.batched_nms(b, s, i, 0.3))
    (keep,) = run_onnx(fn, (boxes, scores, idxs))
    assert torch.equal(keep, fn(boxes, scores, idxs))
    assert len(keep) > len(ops.nms(boxes, scores, 0.3))  # categories did not suppress each other


@pytest.mark.parametrize("method", ["linear", "gaussian", "hard"])
def test_soft_nms(method):
    boxes, scores = random_boxes(120, 2, scale=40.0)
    fn = Fn(lambda b, s: ops.soft_nms(b, s, 0.3, sigma=0.5, score_threshold=0.01, method=method))
    keep, kept = run_onnx(fn, (boxes, scores))
    ref_keep, ref_kept = fn(boxes, scores)
    assert torch.equal(keep, ref_keep)
    torch.testing.assert_close(kept, ref_kept, rtol=1e-5, atol=1e-6)


def test_soft_nms_golden_and_batched():
    boxes = torch.tensor([[6.0, 3, 8, 7], [3, 6, 9, 11], [3, 7, 10, 12], [1, 4, 13, 7]])
    scores = torch.tensor([0.6, 0.9, 0.7, 0.2])
    keep, kept = run_onnx(Fn(lambda b, s: ops.soft_nms(b, s, 0.3, 0.5, 0.01, "gaussian")), (boxes, scores))
    assert keep.tolist() == [1, 0, 2, 3]
    torch.testing.assert_close(kept, torch.tensor([0.9, 0.59630775, 0.35275510, 0.18650459]))
    idxs = torch.tensor([0, 1, 1, 0])
    fn = Fn(lambda b, s, i: ops.batched_soft_nms(b, s, i, 0.3, 0.5, 0.01, "linear"))
    keep, kept = run_onnx(fn, (boxes, scores, idxs))
    ref_keep, ref_kept = fn(boxes, scores, idxs)
    assert torch.equal(keep, ref_keep)
    torch.testing.assert_close(kept, ref_kept)
    # the same box in two categories: neither decays the other
    two = (torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10]]), torch.tensor([0.9, 0.8]), torch.tensor([0, 1]))
    keep, kept = run_onnx(fn, two)
    assert keep.tolist() == [0, 1]
    torch.testing.assert_close(kept, torch.tensor([0.9, 0.8]))


def rois(k, seed, size=32.0, batch=2):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(k, 2, generator=g) * size * 1.2 - size * 0.1  # some past the map's edge
    wh = torch.rand(k, 2, generator=g) * size / 2
    wh[0] = 0.0  # a zero-size RoI
    idx = torch.randint(0, batch, (k, 1), generator=g).float()
    return torch.cat([idx, xy, xy + wh], 1)


@pytest.mark.parametrize("aligned,sampling_ratio", [(False, -1), (True, 2), (True, -1)])
def test_ps_roi_align(aligned, sampling_ratio):
    x = torch.randn(2, 3 * 9, 16, 16, generator=torch.Generator().manual_seed(3))
    r = rois(20, 4)
    fn = Fn(lambda x, r: ops.ps_roi_align(x, r, 3, 0.5, sampling_ratio=sampling_ratio, aligned=aligned))
    (out,) = run_onnx(fn, (x, r))
    torch.testing.assert_close(out, fn(x, r), rtol=1e-5, atol=1e-5)


def test_ps_roi_pool():
    x = torch.randn(2, 4 * 9, 16, 16, generator=torch.Generator().manual_seed(5))
    r = rois(20, 6)
    fn = Fn(lambda x, r: ops.ps_roi_pool(x, r, 3, 0.5))
    (out,) = run_onnx(fn, (x, r))
    torch.testing.assert_close(out, fn(x, r), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("with_mask,bias", [(False, True), (True, True), (True, False)])
def test_deform_conv2d(with_mask, bias):
    torch.manual_seed(7)
    conv = ops.DeformConv2d(4, 6, 3, padding=1, stride=1, groups=2, bias=bias)
    x = torch.randn(2, 4, 9, 9)
    offset = torch.randn(2, 2 * 2 * 9, 9, 9) * 2  # two offset groups
    args = (x, offset) + ((torch.rand(2, 2 * 9, 9, 9),) if with_mask else ())
    (out,) = run_onnx(conv, args)
    torch.testing.assert_close(out, conv(*args), rtol=1e-4, atol=1e-4)


def test_deform_ps_roi_pool_says_it_does_not_export():
    x, r = torch.randn(1, 9 * 2, 8, 8), rois(3, 8, size=8.0, batch=1)
    with pytest.raises(Exception, match="deform_ps_roi_pool has no ONNX export"):
        export_onnx(Fn(lambda x, r: ops.deform_ps_roi_pool(x, r, None, 3, 1.0)), (x, r))


@pytest.mark.parametrize("name", ["greedy_nmm", "nmm"])
def test_merges_say_they_do_not_export(name):
    boxes, scores = torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11]]), torch.tensor([0.9, 0.8])
    with pytest.raises(Exception, match=f"{name} has no ONNX export yet"):
        export_onnx(Fn(lambda b, s: getattr(ops, name)(b, s)[1]), (boxes, scores))
