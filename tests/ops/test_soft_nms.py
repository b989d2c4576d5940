"""Soft-NMS: golden values, a slow reference written from the paper, relations
to greedy NMS, batching, devices and bad input."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from scalekit import ops
from tests.ops import strategies as S
from tests.ops.nms_reference import ref_soft_nms
from tests.ops.test_nms import _random

METHODS = ["linear", "gaussian", "hard"]

# REFERENCE-FACTS golden case (reproduced independently of the original code).
GOLDEN_BOXES = torch.tensor([[6.0, 3, 8, 7], [3, 6, 9, 11], [3, 7, 10, 12], [1, 4, 13, 7]])
GOLDEN_SCORES = torch.tensor([0.6, 0.9, 0.7, 0.2])
GOLDEN = {
    "linear": ([1, 0, 2, 3], [0.9, 0.6, 0.29024392, 0.2]),
    "gaussian": ([1, 0, 2, 3], [0.9, 0.59630775, 0.35275510, 0.18650459]),
    "hard": ([1, 0, 3], [0.9, 0.6, 0.2]),
}


@pytest.mark.parametrize("method", METHODS)
def test_golden_case(method, device):
    keep, scores = ops.soft_nms(
        GOLDEN_BOXES.to(device), GOLDEN_SCORES.to(device), 0.3, sigma=0.5, score_threshold=0.01, method=method
    )
    expected_keep, expected_scores = GOLDEN[method]
    assert keep.tolist() == expected_keep
    torch.testing.assert_close(scores.cpu(), torch.tensor(expected_scores), rtol=1e-6, atol=1e-7)


@given(data=st.data(), method=st.sampled_from(METHODS), thr=S.iou_thresholds,
       sigma=st.sampled_from([0.5, 0.1, 2.0]), score_threshold=st.sampled_from([0.0, 0.001, 0.05, 0.3]),
       offset=st.sampled_from([0.0, 1.0]))
def test_equals_reference_float64_exactly(data, method, thr, sigma, score_threshold, offset):
    boxes = data.draw(S.boxes(max_n=30, dtype=torch.float64))
    scores = data.draw(st.one_of(S.tied_scores(len(boxes), torch.float64),
                                 S.distinct_scores(len(boxes), torch.float64)))
    keep, kept = ops.soft_nms(boxes, scores, thr, sigma, score_threshold, method, pixel_offset=offset)
    ref_keep, ref_kept = ref_soft_nms(boxes, scores, thr, sigma, score_threshold, method, pixel_offset=offset)
    assert keep.tolist() == ref_keep.tolist()
    assert torch.equal(kept, ref_kept)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_equals_reference_lower_precision(method, dtype, device):
    for seed in range(3):
        boxes, scores = _random(150, seed=seed)
        boxes, scores = boxes.to(dtype), scores.to(dtype)
        keep, kept = ops.soft_nms(boxes.to(device), scores.to(device), 0.3, 0.5, 0.01, method)
        ref_keep, ref_kept = ref_soft_nms(boxes, scores, 0.3, 0.5, 0.01, method)
        assert keep.cpu().tolist() == ref_keep.tolist()
        assert kept.dtype == dtype
        torch.testing.assert_close(kept.cpu(), ref_kept)


@given(data=st.data(), thr=S.iou_thresholds)
def test_hard_method_is_greedy_nms(data, thr):
    boxes = data.draw(S.boxes())
    scores = data.draw(S.tied_scores(len(boxes)))
    keep, kept = ops.soft_nms(boxes, scores, thr, score_threshold=0.0, method="hard")
    assert keep.tolist() == ops.nms(boxes, scores, thr).tolist()
    assert torch.equal(kept, scores[keep])


def test_selected_scores_never_increase():
    boxes, scores = _random(2000, seed=11, spread=100.0)
    for method in METHODS:
        _, kept = ops.soft_nms(boxes, scores, method=method)
        assert (kept[1:] <= kept[:-1]).all()


@given(data=st.data(), method=st.sampled_from(METHODS), offset=st.sampled_from([0.0, 1.0]))
def test_negative_scores_come_out_non_increasing_and_equal_the_reference(data, method, offset):
    # A decay moves a negative score away from 0 (s * (2 - weight)): it never
    # rises above the box selected before it, whatever the scores' signs.
    boxes = data.draw(S.boxes(max_n=30, dtype=torch.float64))
    raw = data.draw(st.lists(st.sampled_from([-0.9, -0.5, -0.1, 0.0, 0.2, 0.6]), min_size=len(boxes),
                             max_size=len(boxes)))
    scores = torch.tensor(raw, dtype=torch.float64)
    keep, kept = ops.soft_nms(boxes, scores, 0.3, 0.5, -float("inf"), method, pixel_offset=offset)
    assert (kept[1:] <= kept[:-1]).all()
    if method != "hard":  # nothing falls below -inf; only hard NMS removes boxes
        assert sorted(keep.tolist()) == list(range(len(boxes)))
    ref_keep, ref_kept = ref_soft_nms(boxes, scores, 0.3, 0.5, -float("inf"), method, pixel_offset=offset)
    assert keep.tolist() == ref_keep.tolist()
    assert torch.equal(kept, ref_kept)


def test_negative_score_decay_values():
    boxes = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 5]])  # IoU 0.5
    keep, kept = ops.soft_nms(boxes, torch.tensor([-0.2, -0.4]), 0.3, score_threshold=-10.0)
    assert keep.tolist() == [0, 1]
    torch.testing.assert_close(kept, torch.tensor([-0.2, -0.4 * 1.5]))
    # the decay stops at the lowest finite value instead of overflowing to -inf
    _, kept = ops.soft_nms(boxes, torch.tensor([-1e38, -3e38]), 0.3, score_threshold=-float("inf"))
    assert kept[0] == torch.tensor(-1e38) and kept[1].item() == torch.finfo(torch.float32).min


@pytest.mark.parametrize("method", ["linear", "gaussian"])
def test_identical_boxes_equal_the_reference(method):
    # The dense case of the complexity fix: every box decays every other one.
    boxes = torch.tensor([[0.0, 0, 10, 10]]).repeat(60, 1)
    scores = torch.rand(60, generator=torch.Generator().manual_seed(3))
    keep, kept = ops.soft_nms(boxes, scores, 0.3, 0.5, 0.0, method)
    ref_keep, ref_kept = ref_soft_nms(boxes, scores, 0.3, 0.5, 0.0, method)
    assert keep.tolist() == ref_keep.tolist()
    assert torch.equal(kept, ref_kept)


_LONG_CALL = """
import signal, sys, torch
from scalekit import ops
# A process started in the background of a non-interactive shell (nohup ... &, some CI runners)
# inherits SIGINT ignored, and Python then keeps it ignored: Ctrl-C's handler, as in a terminal.
signal.signal(signal.SIGINT, signal.default_int_handler)
boxes = torch.tensor([[0.0, 0, 10, 10]]).repeat(150_000, 1)  # minutes of work: ~1e10 box pairs
scores = torch.rand(150_000)
print("calling", flush=True)
try:
    ops.soft_nms(boxes, scores, 0.3, score_threshold=0.0, method="gaussian")
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(3)
print("returned", flush=True)
"""


def test_a_long_call_is_interrupted_by_sigint():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", _LONG_CALL], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=root)
    try:
        assert proc.stdout.readline().strip() == "calling", proc.stderr.read()
        time.sleep(1.0)  # well inside the kernel
        proc.send_signal(signal.SIGINT)
        sent = time.monotonic()
        out, err = proc.communicate(timeout=60)
        waited = time.monotonic() - sent
    finally:
        proc.kill()
    assert proc.returncode == 3 and out.strip() == "interrupted", (proc.returncode, out, err[-2000:])
    # The kernel polls every ~0.1 s; without the poll the call runs on for minutes.
    assert waited < 15, waited


def test_nothing_decays_when_nothing_overlaps():
    boxes = torch.tensor([[0.0, 0, 1, 1], [2, 2, 3, 3], [5, 5, 6, 6]])
    scores = torch.tensor([0.2, 0.9, 0.0005])
    keep, kept = ops.soft_nms(boxes, scores, method="gaussian")
    assert keep.tolist() == [1, 0]  # the third starts below score_threshold
    assert torch.equal(kept, torch.tensor([0.9, 0.2]))


@given(data=st.data(), method=st.sampled_from(METHODS), classes=st.integers(1, 4))
def test_batched_is_per_category_then_merged(data, method, classes):
    boxes = data.draw(S.boxes(max_n=30, dtype=torch.float64))
    scores = data.draw(S.tied_scores(len(boxes), torch.float64))
    idxs = torch.tensor(data.draw(st.lists(st.integers(0, classes - 1), min_size=len(boxes),
                                           max_size=len(boxes))), dtype=torch.int64)
    keep, kept = ops.batched_soft_nms(boxes, scores, idxs, method=method)
    ref_keep, ref_kept = ref_soft_nms(boxes, scores, method=method, idxs=idxs)
    assert keep.tolist() == ref_keep.tolist()
    assert torch.equal(kept, ref_kept)
    # and the same as running each category alone, merged by (score desc, index asc)
    merged = []
    for c in range(classes):
        members = (idxs == c).nonzero().flatten()
        k, s = ops.soft_nms(boxes[members], scores[members], method=method)
        merged += [(-float(v), int(members[i])) for i, v in zip(k, s)]
    assert [i for _, i in sorted(merged)] == keep.tolist()


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("batched", [False, True])
def test_device_equals_cpu(method, batched, device):
    boxes, scores = _random(2000, seed=12, dtype=torch.float64)
    idxs = torch.arange(2000) % 5 if batched else None
    args = dict(iou_threshold=0.3, sigma=0.5, score_threshold=0.001, method=method)
    if batched:
        expected = ops.batched_soft_nms(boxes, scores, idxs, **args)
        got = ops.batched_soft_nms(boxes.to(device), scores.to(device), idxs.to(device), **args)
    else:
        expected = ops.soft_nms(boxes, scores, **args)
        got = ops.soft_nms(boxes.to(device), scores.to(device), **args)
    assert got[0].cpu().tolist() == expected[0].tolist()
    torch.testing.assert_close(got[1].cpu(), expected[1], rtol=1e-12, atol=0)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("values,score_threshold", [
    ([0.1, 0.25, 0.5, 0.75, 0.9], 0.001),
    ([-0.5, -0.0, 0.0, 0.25, 0.9], -1.0),  # -0 and +0 tie, as in the CPU's loop
])
def test_device_equals_cpu_over_many_categories_with_ties(method, values, score_threshold, device):
    # Integer boxes on a small grid and five score values: exact IoUs, and ties within a category
    # and across categories. Labels sparse, negative and huge; 300 categories of one box; idxs a
    # strided view. (The CUDA kernel runs each category in a block of its own and sorts the
    # selections into the loop's order afterwards.)
    g = torch.Generator().manual_seed(5)
    n = 3000
    xy = torch.randint(0, 40, (n, 2), generator=g).double()
    boxes = torch.cat([xy, xy + torch.randint(1, 12, (n, 2), generator=g).double()], 1)
    scores = torch.tensor(values, dtype=torch.float64)[torch.randint(0, 5, (n,), generator=g)]
    idxs = torch.tensor([-7, 0, 3, 2**40, 11])[torch.randint(0, 5, (n,), generator=g)]
    idxs[:300] = torch.arange(300) * 1000 + 17
    args = dict(method=method, score_threshold=score_threshold)
    expected = ops.batched_soft_nms(boxes, scores, idxs, **args)
    strided = torch.stack([idxs, idxs], 1).to(device)[:, 0]
    got = ops.batched_soft_nms(boxes.to(device), scores.to(device), strided, **args)
    assert got[0].cpu().tolist() == expected[0].tolist()
    # the same boxes in the same order; Gaussian scores within an ulp or so (the device's exp)
    torch.testing.assert_close(got[1].cpu(), expected[1], rtol=1e-12, atol=0)
    # and one category: the same boxes through soft_nms
    expected = ops.soft_nms(boxes, scores, **args)
    got = ops.soft_nms(boxes.to(device), scores.to(device), **args)
    assert got[0].cpu().tolist() == expected[0].tolist()
    torch.testing.assert_close(got[1].cpu(), expected[1], rtol=1e-12, atol=0)


@pytest.mark.parametrize("method", METHODS)
def test_racecheck_sized_soft_nms_equals_cpu(method, device):
    # Sized for compute-sanitizer's racecheck (benchmarks/gpu_check.sh runs the tests named
    # "racecheck"): two categories of 150 boxes give blocks of three warps, so the block-wide
    # argmax goes through shared memory, and a few hundred rounds stay within its time.
    boxes, scores = _random(300, seed=4, dtype=torch.float64)
    idxs = torch.arange(300) % 2
    expected = ops.batched_soft_nms(boxes, scores, idxs, method=method)
    got = ops.batched_soft_nms(boxes.to(device), scores.to(device), idxs.to(device), method=method)
    assert got[0].cpu().tolist() == expected[0].tolist()
    torch.testing.assert_close(got[1].cpu(), expected[1], rtol=1e-12, atol=0)


class TestModuleChecksAtConstruction:
    @pytest.mark.parametrize("kwargs,message", [
        (dict(sigma=0.0), "sigma must be > 0.0, got 0.0"),
        (dict(sigma=float("nan")), "sigma must be a finite number, got nan"),
        (dict(iou_threshold=float("nan")), "iou_threshold must be a number, got nan"),
        (dict(score_threshold=float("nan")), "score_threshold must be a number, got nan"),
        (dict(pixel_offset=-1), "pixel_offset must be >= 0.0, got -1.0"),
        (dict(method="soft"), "method must be one of"),
    ])
    def test_same_message_as_the_function(self, kwargs, message):
        with pytest.raises(ValueError, match=message):
            ops.SoftNMS(**kwargs)
        with pytest.raises(ValueError, match=message):
            ops.soft_nms(torch.zeros(1, 4), torch.ones(1), **kwargs)

    def test_numpy_numbers(self):
        np = pytest.importorskip("numpy")
        merge = ops.SoftNMS(np.float32(0.3), np.float64(0.5), np.float32(0.001), pixel_offset=np.int64(1))
        boxes, scores = _random(50, seed=21)
        expected = ops.soft_nms(boxes, scores, 0.3, 0.5, 0.001, pixel_offset=1.0)
        assert all(torch.equal(a, b) for a, b in zip(merge(boxes, scores), expected))
        with pytest.raises(TypeError, match="sigma must be a number, got bool"):
            ops.SoftNMS(sigma=np.bool_(True))


def test_module_form():
    merge = ops.SoftNMS(method="gaussian", sigma=0.55)
    boxes, scores = _random(100, seed=13)
    assert all(torch.equal(a, b) for a, b in zip(merge(boxes, scores), ops.soft_nms(boxes, scores, method="gaussian", sigma=0.55)))
    idxs = torch.arange(100) % 3
    got = merge(boxes, scores, idxs)
    assert all(torch.equal(a, b) for a, b in zip(got, ops.batched_soft_nms(boxes, scores, idxs, method="gaussian", sigma=0.55)))
    assert "method='gaussian'" in repr(merge) and "sigma=0.55" in repr(merge)


def test_empty(device):
    keep, kept = ops.soft_nms(torch.zeros(0, 4, device=device), torch.zeros(0, device=device))
    assert keep.shape == kept.shape == (0,) and keep.dtype == torch.int64


class TestBadInput:
    boxes = torch.tensor([[0.0, 0, 1, 1]])
    scores = torch.tensor([0.5])

    def test_method(self):
        with pytest.raises(ValueError, match=r"method must be one of \('linear', 'gaussian', 'hard'\), got 'soft'"):
            ops.soft_nms(self.boxes, self.scores, method="soft")
        with pytest.raises(ValueError, match="method must be one of"):
            ops.SoftNMS(method="Linear")
        with pytest.raises(ValueError, match="method must be one of 'linear'"):
            torch.ops.scalekit.soft_nms(self.boxes, self.scores, None, 0.3, 0.5, 0.0, "soft", 0.0)

    @pytest.mark.parametrize("sigma", [0.0, -1.0, float("inf"), float("nan")])
    def test_sigma(self, sigma):
        with pytest.raises(ValueError, match="sigma must be"):
            ops.soft_nms(self.boxes, self.scores, sigma=sigma)

    def test_non_finite(self, device):
        with pytest.raises(ValueError, match="scores must be finite"):
            ops.soft_nms(self.boxes.to(device), torch.tensor([float("nan")], device=device))

    def test_shapes(self):
        with pytest.raises(ValueError, match=r"scores must have shape \[N\]"):
            ops.soft_nms(self.boxes, torch.zeros(2))
        with pytest.raises(ValueError, match=r"idxs must have shape \[N\]"):
            ops.batched_soft_nms(self.boxes, self.scores, torch.zeros(2, dtype=torch.int64))


def test_opcheck(device):
    boxes, scores = _random(200, seed=14)
    idxs = torch.arange(200) % 5
    for args in [
        (boxes, scores, None, 0.3, 0.5, 0.001, "linear", 0.0),
        (boxes, scores, idxs, 0.3, 0.5, 0.001, "gaussian", 1.0),
        (boxes[:0], scores[:0], None, 0.3, 0.5, 0.001, "hard", 0.0),
    ]:
        args = tuple(a.to(device) if isinstance(a, torch.Tensor) else a for a in args)
        torch.library.opcheck(torch.ops.scalekit.soft_nms.default, args)
