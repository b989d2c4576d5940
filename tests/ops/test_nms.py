"""Greedy NMS, batched NMS and grouped NMS: against torchvision, against a slow
reference written from the definition, and on the cases torchvision gets wrong."""

import pytest
import torch
from tests.peers import torchvision
from hypothesis import given
from hypothesis import strategies as st

from scalekit import ops
from tests.ops import strategies as S
from tests.ops.nms_reference import ref_nms


def _random(n, seed, spread=200.0, size=60.0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * spread
    wh = torch.rand(n, 2, generator=g) * size
    return torch.cat([xy, xy + wh], 1).to(dtype), torch.rand(n, generator=g).to(dtype)


class TestNMS:
    @given(data=st.data(), dtype=st.sampled_from([torch.float32, torch.float64]), thr=S.iou_thresholds)
    def test_equals_torchvision(self, data, dtype, thr):
        boxes = data.draw(S.boxes(dtype=dtype))
        scores = data.draw(S.distinct_scores(len(boxes), dtype=dtype))
        expected = torchvision.ops.nms(boxes, scores, thr)
        torch.testing.assert_close(ops.nms(boxes, scores, thr), expected, rtol=0, atol=0)

    @given(data=st.data(), thr=S.iou_thresholds, offset=st.sampled_from([0.0, 1.0]))
    def test_equals_reference_with_ties_and_offsets(self, data, thr, offset):
        boxes = data.draw(S.boxes())
        scores = data.draw(S.tied_scores(len(boxes)))
        keep = ops.nms(boxes, scores, thr, pixel_offset=offset)
        assert keep.tolist() == ref_nms(boxes, scores, thr, pixel_offset=offset).tolist()

    def test_iou_equal_to_threshold_is_not_suppressed(self):
        boxes = torch.tensor([[0.0, 0, 3, 1], [1, 0, 4, 1]])  # IoU exactly 2 / 4
        scores = torch.tensor([0.9, 0.8])
        assert ops.nms(boxes, scores, 0.5).tolist() == [0, 1]
        assert torchvision.ops.nms(boxes, scores, 0.5).tolist() == [0, 1]
        assert ops.nms(boxes, scores, 0.4999).tolist() == [0]

    def test_threshold_compared_in_double_like_torchvision(self):
        # float32 IoU 0.3f = 0.30000001... is above the double 0.3.
        boxes = torch.tensor([[0.0, 0, 10, 1], [7, 0, 10, 1]])  # IoU = 3 / 10
        scores = torch.tensor([0.9, 0.8])
        assert ops.nms(boxes, scores, 0.3).tolist() == torchvision.ops.nms(boxes, scores, 0.3).tolist() == [0]

    def test_pixel_offset_one_is_the_plus_one_convention(self):
        boxes = torch.tensor([[0.0, 0, 9, 9], [5, 0, 14, 9]])
        scores = torch.tensor([0.9, 0.8])
        # +1: 10x10 boxes overlapping 5x10 -> IoU 1/3; without: 36 / 126 = 0.286.
        assert ops.nms(boxes, scores, 0.3).tolist() == [0, 1]
        assert ops.nms(boxes, scores, 0.3, pixel_offset=1).tolist() == [0]

    def test_ties_go_to_the_lower_index(self):
        boxes = torch.tensor([[0.0, 0, 10, 10]] * 3)
        assert ops.nms(boxes, torch.tensor([0.5, 0.7, 0.7]), 0.5).tolist() == [1]

    def test_negative_threshold_suppresses_even_disjoint_boxes(self):
        boxes, scores = _random(50, seed=1)
        assert ops.nms(boxes, scores, -0.1).tolist() == torchvision.ops.nms(boxes, scores, -0.1).tolist()

    def test_empty(self, device):
        keep = ops.nms(torch.zeros(0, 4, device=device), torch.zeros(0, device=device), 0.5)
        assert keep.shape == (0,) and keep.dtype == torch.int64 and keep.device.type == device.type

    def test_many_boxes_and_parallel_windows_equal_torchvision(self):
        # 40k boxes in one cluster: windows long enough to be split over threads.
        boxes, scores = _random(40_000, seed=2, spread=30.0, size=60.0)
        assert torch.equal(ops.nms(boxes, scores, 0.8), torchvision.ops.nms(boxes, scores, 0.8))

    @pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
    def test_half_precision_computes_in_float32(self, dtype, device):
        boxes, scores = _random(300, seed=3)
        boxes, scores = boxes.to(dtype), scores.to(dtype)
        expected = ref_nms(boxes.float(), scores.float(), 0.5)
        assert ops.nms(boxes.to(device), scores.to(device), 0.5).tolist() == expected.tolist()

    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
    def test_device_equals_cpu(self, device, dtype):
        for seed in range(3):
            boxes, scores = _random(3000, seed=seed, dtype=dtype)
            for thr in (0.0, 0.5, 0.9, -0.5):
                keep = ops.nms(boxes.to(device), scores.to(device), thr).cpu()
                assert torch.equal(keep, ops.nms(boxes, scores, thr))


def test_racecheck_sized_nms_equals_cpu(device):
    # Sized for compute-sanitizer's racecheck (benchmarks/gpu_check.sh runs the tests named
    # "racecheck"): 300 boxes are five 64-box words of the IoU mask, so the mask and reduce
    # kernels use several threads of their shared memory, and every launch stays small.
    boxes, scores = _random(300, seed=3)
    idxs = torch.arange(300) % 3
    for thr in (0.3, 0.7):
        assert torch.equal(ops.nms(boxes.to(device), scores.to(device), thr).cpu(), ops.nms(boxes, scores, thr))
        got = ops.batched_nms(boxes.to(device), scores.to(device), idxs.to(device), thr).cpu()
        assert torch.equal(got, ops.batched_nms(boxes, scores, idxs, thr))


class TestBatchedNMS:
    @given(data=st.data(), thr=S.iou_thresholds, classes=st.integers(1, 4))
    def test_equals_per_class_reference(self, data, thr, classes):
        boxes = data.draw(S.boxes())
        scores = data.draw(S.tied_scores(len(boxes)))
        idxs = torch.tensor(data.draw(st.lists(st.integers(0, classes - 1), min_size=len(boxes),
                                               max_size=len(boxes))), dtype=torch.int64)
        keep = ops.batched_nms(boxes, scores, idxs, thr)
        assert keep.tolist() == ref_nms(boxes, scores, thr, idxs=idxs).tolist()

    def test_equals_torchvision_on_positive_coordinates(self, device):
        boxes, scores = _random(2000, seed=4)
        idxs = torch.randint(0, 80, (2000,), generator=torch.Generator().manual_seed(4))
        expected = torchvision.ops.batched_nms(boxes, scores, idxs, 0.5)
        keep = ops.batched_nms(boxes.to(device), scores.to(device), idxs.to(device), 0.5)
        assert torch.equal(keep.cpu(), expected)

    def test_classes_never_suppress_each_other_below_minus_one(self):
        # torchvision offsets class c by c * (max coordinate + 1): with every
        # coordinate <= -1 the offset is <= 0 and the two classes collide.
        boxes = torch.tensor([[-10.0, -10, -1, -1], [-10, -10, -1, -1]])
        scores = torch.tensor([0.9, 0.8])
        idxs = torch.tensor([0, 1])
        assert torchvision.ops.batched_nms(boxes, scores, idxs, 0.5).tolist() == [0]  # the defect
        assert ops.batched_nms(boxes, scores, idxs, 0.5).tolist() == [0, 1]

    def test_accepts_any_integer_idxs(self):
        boxes, scores = _random(100, seed=5)
        idxs = torch.arange(100) % 3
        expected = ops.batched_nms(boxes, scores, idxs, 0.5)
        assert torch.equal(ops.batched_nms(boxes, scores, idxs.to(torch.int32), 0.5), expected)


class TestGroupedNMS:
    def _data(self, n=500, classes=30, seed=6):
        boxes, scores = _random(n, seed=seed)
        labels = torch.randint(0, classes, (n,), generator=torch.Generator().manual_seed(seed))
        return boxes, scores, labels

    def test_every_class_its_own_group_is_per_class_nms(self, device):
        boxes, scores, labels = (t.to(device) for t in self._data())
        keep = ops.grouped_nms(boxes, scores, labels, torch.arange(30), 0.5)
        assert torch.equal(keep, ops.batched_nms(boxes, scores, labels, 0.5))
        assert torch.equal(keep.cpu(), torchvision.ops.batched_nms(*(t.cpu() for t in (boxes, scores, labels)), 0.5))

    def test_one_group_is_plain_nms(self):
        boxes, scores, labels = self._data()
        keep = ops.grouped_nms(boxes, scores, labels, torch.zeros(30, dtype=torch.int64), 0.5)
        assert torch.equal(keep, torchvision.ops.nms(boxes, scores, 0.5))

    def test_equals_torchvision_per_group(self):
        boxes, scores, labels = self._data()
        groups = torch.randint(0, 4, (30,), generator=torch.Generator().manual_seed(0))
        expected = torchvision.ops.batched_nms(boxes, scores, groups[labels], 0.5)
        assert torch.equal(ops.grouped_nms(boxes, scores, labels, groups, 0.5), expected)

    def test_labels_out_of_range(self):
        boxes, scores, labels = self._data()
        with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\)"):
            ops.grouped_nms(boxes, scores, labels, torch.zeros(10, dtype=torch.int64), 0.5)
        with pytest.raises(ValueError, match="groups must be a 1-D integer tensor"):
            ops.grouped_nms(boxes, scores, labels, torch.zeros(30), 0.5)


class TestBadInput:
    boxes = torch.tensor([[0.0, 0, 1, 1], [0, 0, 2, 2]])
    scores = torch.tensor([0.5, 0.6])

    @pytest.mark.parametrize(
        "boxes, scores, error, match",
        [
            (torch.zeros(2, 5), torch.zeros(2), ValueError, r"boxes must have shape \[N, 4\], got \[2, 5\]"),
            (torch.zeros(4), torch.zeros(1), ValueError, "boxes must have shape"),
            (torch.zeros(2, 4, dtype=torch.int64), torch.zeros(2), TypeError, "boxes must be a floating point"),
            (torch.zeros(2, 4), torch.zeros(3), ValueError, r"scores must have shape \[N\] with N = .* = 2"),
            (torch.zeros(2, 4), torch.zeros(2, dtype=torch.int32), TypeError, "scores must be a floating point"),
            ([[0, 0, 1, 1]], torch.zeros(1), TypeError, "boxes must be a torch.Tensor"),
            (torch.zeros(2, 4), torch.zeros(2, device="meta"), ValueError, "scores must be on the device of boxes"),
        ],
    )
    def test_shapes_types_devices(self, boxes, scores, error, match):
        with pytest.raises(error, match=match):
            ops.nms(boxes, scores, 0.5)

    @pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
    def test_non_finite_values(self, bad, device):
        boxes, scores = self.boxes.clone().to(device), self.scores.clone().to(device)
        boxes[1, 2] = bad
        with pytest.raises(ValueError, match="boxes must be finite"):
            ops.nms(boxes, self.scores.to(device), 0.5)
        scores[0] = bad
        with pytest.raises(ValueError, match="scores must be finite"):
            ops.nms(self.boxes.to(device), scores, 0.5)

    def test_arguments(self):
        with pytest.raises(ValueError, match="iou_threshold must be a number, got nan"):
            ops.nms(self.boxes, self.scores, float("nan"))
        with pytest.raises(ValueError, match="pixel_offset must be >= 0"):
            ops.nms(self.boxes, self.scores, 0.5, pixel_offset=-1)
        with pytest.raises(ValueError, match=r"idxs must have shape \[N\]"):
            ops.batched_nms(self.boxes, self.scores, torch.zeros(3, dtype=torch.int64), 0.5)
        with pytest.raises(TypeError, match="idxs must be an integer tensor"):
            ops.batched_nms(self.boxes, self.scores, torch.zeros(2), 0.5)

    def test_direct_op_calls_are_checked_too(self):
        with pytest.raises(ValueError, match=r"boxes must have shape \[N, 4\]"):
            torch.ops.scalekit.nms(torch.zeros(3, 3), torch.zeros(3), None, 0.5, 0.0)
        # ValueError for a wrong dtype too: the stable ABI carries no TypeError.
        with pytest.raises(ValueError, match="idxs must be an int64 tensor"):
            torch.ops.scalekit.nms(self.boxes, self.scores, torch.zeros(2, dtype=torch.int32), 0.5, 0.0)


def test_opcheck(device):
    boxes, scores = _random(200, seed=7)
    idxs = torch.arange(200) % 5
    for args in [(boxes, scores, None, 0.5, 0.0), (boxes, scores, idxs, 0.3, 1.0), (boxes[:0], scores[:0], None, 0.5, 0.0)]:
        args = tuple(a.to(device) if isinstance(a, torch.Tensor) else a for a in args)
        torch.library.opcheck(torch.ops.scalekit.nms.default, args)


def test_torch_compile_fullgraph():
    boxes, scores = _random(300, seed=8)
    labels = torch.arange(300) % 7

    @torch.compile(fullgraph=True)
    def f(boxes, scores, labels):
        keep = ops.batched_nms(boxes, scores, labels, 0.5)
        return boxes[keep], keep

    kept, keep = f(boxes, scores, labels)
    assert torch.equal(keep, ops.batched_nms(boxes, scores, labels, 0.5))
    assert torch.equal(kept, boxes[keep])
