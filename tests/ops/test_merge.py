"""Non-maximum merging (greedy_nmm, nmm): hand cases, a slow reference written
from the definitions, SAHI's own functions and postprocess classes, opcheck,
dtypes, and bad, empty, non-finite and huge input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from scalekit import ops
from tests.ops import strategies as S
from tests.ops.merge_reference import ref_greedy_nmm, ref_nmm

try:  # SAHI is a test and benchmark dependency only
    from sahi.postprocess import combine as sahi_combine
    from sahi.postprocess.backends import set_postprocess_backend
    from sahi.prediction import ObjectPrediction

    set_postprocess_backend("numpy")  # the same path on every machine (auto picks torchvision on a GPU)
except ImportError:
    sahi_combine = None
needs_sahi = pytest.mark.skipif(sahi_combine is None, reason="sahi is not installed (pip install sahi)")

KINDS = {"greedy": (ops.greedy_nmm, ref_greedy_nmm), "nmm": (ops.nmm, ref_nmm)}
THRESHOLDS = [0.1, 0.25, 0.3, 1 / 3, 0.5, 0.7, 0.9, 1.0]


def _t(rows):
    return torch.tensor(rows, dtype=torch.float32)


# ---- hand cases: the effect of each rule


def test_greedy_merges_matched_boxes_into_their_union_with_the_keeper_score():
    boxes = _t([[0, 0, 10, 10], [5, 0, 15, 10], [50, 50, 60, 60], [12, 0, 22, 10]])
    scores = torch.tensor([0.8, 0.9, 0.7, 0.6])
    keep, merged, merged_scores = ops.greedy_nmm(boxes, scores, match_threshold=0.3)
    # box 1 (0.9) keeps and takes box 0 (IoU 1/3); box 3 meets box 1 at IoU 30/170 only
    assert keep.tolist() == [1, 2, 3]
    assert merged.tolist() == [[0, 0, 15, 10], [50, 50, 60, 60], [12, 0, 22, 10]]
    assert merged_scores.tolist() == pytest.approx([0.9, 0.7, 0.6])


def test_nmm_merges_chains_greedy_does_not():
    boxes = _t([[0, 0, 10, 10], [6, 0, 16, 10], [12, 0, 22, 10]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    keep, merged, _ = ops.nmm(boxes, scores, match_threshold=0.3, metric="ios")
    assert keep.tolist() == [0] and merged.tolist() == [[0, 0, 22, 10]]
    keep, merged, _ = ops.greedy_nmm(boxes, scores, match_threshold=0.3, metric="ios")
    assert keep.tolist() == [0, 2] and merged.tolist() == [[0, 0, 16, 10], [12, 0, 22, 10]]


def test_a_candidate_that_no_longer_matches_the_grown_box_is_dropped():
    # Both candidates meet the keeper at IoU 40/160 = 0.25, but once the first is
    # merged the union [0, 16] meets the second at 40/220 < 0.25: dropped, not kept.
    boxes = _t([[0, 0, 10, 10], [6, 0, 16, 10], [-6, 0, 4, 10]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    for fn in (ops.greedy_nmm, ops.nmm):
        keep, merged, _ = fn(boxes, scores, match_threshold=0.25)
        assert keep.tolist() == [0]
        assert merged.tolist() == [[0, 0, 16, 10]]


def test_match_is_at_or_above_the_threshold():
    boxes = _t([[0, 0, 10, 10], [5, 0, 15, 10]])  # IoU exactly 1/3, IoS exactly 1/2
    scores = torch.tensor([0.9, 0.8])
    assert len(ops.greedy_nmm(boxes, scores, match_threshold=1 / 3)[0]) == 1
    assert len(ops.greedy_nmm(boxes, scores, match_threshold=0.34)[0]) == 2
    assert len(ops.nmm(boxes, scores, match_threshold=0.5, metric="IOS")[0]) == 1
    assert len(ops.nmm(boxes, scores, match_threshold=0.51, metric="ios")[0]) == 2


def test_ios_divides_by_the_smaller_area():
    boxes = _t([[0, 0, 100, 100], [10, 10, 20, 20]])  # IoU 0.01, IoS 1
    scores = torch.tensor([0.9, 0.8])
    assert len(ops.greedy_nmm(boxes, scores, match_threshold=0.5, metric="iou")[0]) == 2
    assert ops.greedy_nmm(boxes, scores, match_threshold=0.5, metric="ios")[0].tolist() == [0]


def test_idxs_keep_categories_apart_and_results_stay_in_score_order():
    boxes = _t([[0, 0, 10, 10], [0, 0, 10, 10], [1, 0, 11, 10], [30, 30, 40, 40]])
    scores = torch.tensor([0.5, 0.9, 0.8, 0.7])
    idxs = torch.tensor([1, 0, 1, 0])
    for fn in (ops.greedy_nmm, ops.nmm):
        keep, merged, merged_scores = fn(boxes, scores, idxs, match_threshold=0.5)
        assert keep.tolist() == [1, 2, 3]  # 0.9 (class 0), 0.8 (class 1, takes box 0), 0.7
        assert merged[1].tolist() == [0, 0, 11, 10]
        assert merged_scores.tolist() == pytest.approx([0.9, 0.8, 0.7])
        assert fn(boxes, scores, None, match_threshold=0.5)[0].tolist() == [1, 3]


def test_score_ties_go_to_the_smaller_coordinates_then_the_index():
    boxes = _t([[2, 0, 12, 10], [0, 0, 10, 10], [0, 0, 10, 10]])
    scores = torch.tensor([0.5, 0.5, 0.5])
    # (x1, y1, x2, y2) ascending first: box 1 before box 2 (index) before box 0 (x1 = 2)
    keep, merged, _ = ops.greedy_nmm(boxes, scores, match_threshold=0.9)
    assert keep.tolist() == [1, 0]
    # NMM: a box of equal score takes only an identical box
    keep, merged, _ = ops.nmm(boxes, scores, match_threshold=0.5)
    assert keep.tolist() == [1, 0]
    assert merged.tolist() == [[0, 0, 10, 10], [2, 0, 12, 10]]
    assert ops.greedy_nmm(boxes, scores, match_threshold=0.5)[0].tolist() == [1]


def test_non_positive_threshold_merges_everything_even_disjoint_boxes():
    boxes = _t([[0, 0, 1, 1], [100, 100, 101, 101], [5, 5, 5, 5]])
    scores = torch.tensor([0.3, 0.9, 0.5])
    for fn in (ops.greedy_nmm, ops.nmm):
        keep, merged, _ = fn(boxes, scores, match_threshold=0.0)
        assert keep.tolist() == [1] and merged.tolist() == [[0, 0, 101, 101]]


def test_threshold_is_rounded_to_the_metric_precision():
    # IoU exactly 7/10 in float32 is 0.69999999, the float32 nearest to 0.7: a match at 0.7
    boxes = _t([[0, 0, 10, 10], [0, 0, 7, 10]])
    scores = torch.tensor([0.9, 0.8])
    assert ops.greedy_nmm(boxes, scores, match_threshold=0.7)[0].tolist() == [0]
    assert ops.nmm(boxes.double(), scores.double(), match_threshold=0.7)[0].tolist() == [0]


# ---- the reference, on hypothesis inputs


def _scores(data, n, dtype):
    return data.draw(st.one_of(S.tied_scores(n, dtype), S.distinct_scores(n, dtype)))


@given(data=st.data(), kind=st.sampled_from(sorted(KINDS)), metric=st.sampled_from(["iou", "ios"]),
       thr=st.one_of(st.sampled_from(THRESHOLDS + [0.0, -0.5, 1.5]), st.floats(-0.5, 1.2, allow_nan=False)),
       classes=st.sampled_from([0, 1, 3]), dtype=st.sampled_from([torch.float64, torch.float32]))
def test_equals_reference_exactly(data, kind, metric, thr, classes, dtype):
    boxes = data.draw(S.boxes(max_n=30, dtype=dtype))
    scores = _scores(data, len(boxes), dtype)
    idxs = None if classes == 0 else torch.tensor(data.draw(st.lists(st.integers(0, classes), min_size=len(boxes),
                                                                     max_size=len(boxes))), dtype=torch.int64)
    fn, ref = KINDS[kind]
    keep, merged, merged_scores = fn(boxes, scores, idxs, thr, metric)
    ref_keep, ref_merged, ref_scores = ref(boxes, scores, idxs, thr, metric)
    assert keep.tolist() == ref_keep.tolist()
    assert torch.equal(merged, ref_merged)
    assert torch.equal(merged_scores, ref_scores)
    assert merged.dtype == dtype and merged_scores.dtype == dtype


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_lower_precision_computes_in_float32(kind, dtype):
    g = torch.Generator().manual_seed(3)
    xy = torch.rand(300, 2, generator=g) * 200
    boxes = torch.cat([xy, xy + 5 + torch.rand(300, 2, generator=g) * 40], 1).to(dtype)
    scores = torch.rand(300, generator=g).to(dtype)
    fn, ref = KINDS[kind]
    keep, merged, merged_scores = fn(boxes, scores, None, 0.4, "iou")
    ref_keep, ref_merged, _ = ref(boxes, scores, None, 0.4, "iou")
    assert keep.tolist() == ref_keep.tolist() and len(keep) < 300
    assert merged.dtype == dtype and torch.equal(merged, ref_merged)
    assert torch.equal(merged_scores, scores[keep])


def _clustered(n, seed, classes=1):
    g = torch.Generator().manual_seed(seed)
    objects = max(n // 8, 1)
    ctr = torch.rand(objects, 2, generator=g) * 400
    size = 4 + torch.rand(objects, 2, generator=g) * 30
    which = torch.randint(0, objects, (n,), generator=g)
    c = ctr[which] + torch.randn(n, 2, generator=g) * size[which] * 0.15
    s = size[which] * (1 + torch.randn(n, 2, generator=g) * 0.15).clamp(min=0.5)
    idxs = torch.randint(0, classes, (n,), generator=g)
    return torch.cat([c - s / 2, c + s / 2], 1), torch.rand(n, generator=g), idxs


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("metric", ["iou", "ios"])
def test_equals_reference_on_clusters_large_enough_to_compact_the_index(kind, metric):
    boxes, scores, idxs = _clustered(1500, seed=5, classes=3)
    fn, ref = KINDS[kind]
    for args in ((None, 0.5, metric), (idxs, 0.3, metric)):
        keep, merged, _ = fn(boxes, scores, *args)
        ref_keep, ref_merged, _ = ref(boxes, scores, *args)
        assert keep.tolist() == ref_keep.tolist()
        assert torch.equal(merged, ref_merged)
        assert len(keep) < 1000


# ---- SAHI's own functions and postprocess classes


def _predictions(boxes, scores, labels):
    return np.concatenate([boxes.numpy(), scores.numpy()[:, None], labels.numpy()[:, None]], 1).astype(np.float32)


def _object_predictions(boxes, scores, labels):
    return [ObjectPrediction(bbox=b, score=s, category_id=c)
            for b, s, c in zip(boxes.tolist(), scores.tolist(), labels.tolist())]


_SAHI = {  # kind -> (agnostic function, batched function, postprocess class)
    "greedy": lambda: (sahi_combine.greedy_nmm, sahi_combine.batched_greedy_nmm, sahi_combine.GreedyNMMPostprocess),
    "nmm": lambda: (sahi_combine.nmm, sahi_combine.batched_nmm, sahi_combine.NMMPostprocess),
}


@st.composite
def _sahi_boxes(draw):
    """Non-negative boxes (SAHI's BoundingBox rejects negative coordinates): small
    integer or half-integer grids with many exact ties and identical boxes, or floats."""
    n = draw(st.integers(1, 40))
    if draw(st.booleans()):
        step = draw(st.sampled_from([1.0, 0.5]))
        v = st.integers(0, 16)
        rows = draw(st.lists(st.tuples(v, v, st.integers(0, 10), st.integers(0, 10)), min_size=n, max_size=n))
        return torch.tensor([[x * step, y * step, (x + w) * step, (y + h) * step] for x, y, w, h in rows],
                            dtype=torch.float32)
    f = st.floats(0, 100, width=32)
    rows = draw(st.lists(st.tuples(f, f, st.floats(0, 40, width=32), st.floats(0, 40, width=32)),
                         min_size=n, max_size=n))
    return torch.tensor([[x, y, x + w, y + h] for x, y, w, h in rows], dtype=torch.float32)


@needs_sahi
@given(data=st.data(), kind=st.sampled_from(sorted(KINDS)), metric=st.sampled_from(["IOU", "IOS"]),
       thr=st.sampled_from(THRESHOLDS), agnostic=st.booleans())
def test_equals_sahi(data, kind, metric, thr, agnostic):
    boxes = data.draw(_sahi_boxes())
    n = len(boxes)
    scores = data.draw(st.one_of(S.tied_scores(n), S.distinct_scores(n)))
    labels = torch.tensor(data.draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)), dtype=torch.int64)
    agnostic_fn, batched_fn, postprocess = _SAHI[kind]()
    fn, ref = KINDS[kind]
    keep, merged, merged_scores = fn(boxes, scores, None if agnostic else labels, thr, metric)

    with warnings.catch_warnings():  # SAHI's re-check divides 0 by 0 for two empty boxes
        warnings.simplefilter("ignore", RuntimeWarning)
        groups = (agnostic_fn if agnostic else batched_fn)(_predictions(boxes, scores, labels), metric, thr)
        merged_sahi = postprocess(match_threshold=thr, match_metric=metric, class_agnostic=agnostic)(
            _object_predictions(boxes, scores, labels))
    # The keepers: SAHI lists them category by category when batched, we by score.
    keepers = list(groups)
    if agnostic:
        assert keep.tolist() == keepers
    else:
        assert sorted(keep.tolist()) == sorted(keepers)
    # The merged boxes and scores: its postprocess classes' objects.
    sahi_rows = [p.bbox.to_xyxy() + [p.score.value] for p in merged_sahi]
    ours = torch.cat([merged.double(), merged_scores.double()[:, None]], 1).tolist()
    if agnostic:
        assert ours == sahi_rows
    else:
        assert sorted(ours) == sorted(sahi_rows)
    # Labels: the keeper's, SAHI's too except where a merged box ties its score.
    sahi_label = {tuple(p.bbox.to_xyxy() + [p.score.value]): p.category.id for p in merged_sahi}
    for row, k in zip(ours, keep.tolist()):
        if not (scores == scores[k]).sum() > 1:
            assert sahi_label[tuple(row)] == labels[k]


@needs_sahi
@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("metric,agnostic", [("IOS", False), ("IOU", True)])
def test_equals_sahi_on_clusters_past_its_sparse_threshold(kind, metric, agnostic):
    # 2,500 boxes: SAHI answers from its STRtree (its "sparse" path, from 2,000 boxes) rather than a matrix.
    boxes, scores, labels = _clustered(2500, seed=11, classes=3)
    boxes = boxes.clamp(min=0)
    _, _, postprocess = _SAHI[kind]()
    keep, merged, merged_scores = KINDS[kind][0](boxes, scores, None if agnostic else labels, 0.5, metric)
    expected = postprocess(match_threshold=0.5, match_metric=metric, class_agnostic=agnostic)(
        _object_predictions(boxes, scores, labels))
    ours = torch.cat([merged.double(), merged_scores.double()[:, None], labels[keep].double()[:, None]], 1).tolist()
    theirs = [p.bbox.to_xyxy() + [p.score.value, p.category.id] for p in expected]
    assert len(keep) < 2000
    assert (ours == theirs) if agnostic else (sorted(ours) == sorted(theirs))


# ---- op registration


@pytest.mark.parametrize("op", ["greedy_nmm", "nmm"])
def test_opcheck(op):
    boxes, scores, idxs = _clustered(300, seed=1, classes=4)
    for args in [
        (boxes, scores, None, 0.5, "iou"),
        (boxes.double(), scores.double(), idxs, 0.3, "ios"),
        (boxes[:0], scores[:0], None, 0.5, "iou"),
    ]:
        torch.library.opcheck(getattr(torch.ops.scalekit, op).default, args)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_compiles_with_dynamic_output_size(kind):
    fn = KINDS[kind][0]
    boxes, scores, idxs = _clustered(200, seed=2, classes=2)
    compiled = torch.compile(lambda b, s, i: fn(b, s, i, 0.4, "ios"), fullgraph=True, backend="eager")
    for a, b in zip(compiled(boxes, scores, idxs), fn(boxes, scores, idxs, 0.4, "ios")):
        assert torch.equal(a, b)


# ---- CUDA (compile-checked here; run by `make gpu-check` on a GPU machine)


@pytest.mark.cuda
@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_cuda_equals_cpu(kind, dtype):
    boxes, scores, idxs = _clustered(3000, seed=7, classes=3)
    boxes, scores = boxes.to(dtype), scores.to(dtype)
    fn = KINDS[kind][0]
    for args in ((None, 0.5, "iou"), (idxs, 0.3, "ios"), (None, 0.0, "iou"), (idxs, 2.0, "ios")):
        cpu = fn(boxes, scores, *args)
        cuda = fn(boxes.cuda(), scores.cuda(), *(a.cuda() if isinstance(a, torch.Tensor) else a for a in args))
        for a, b in zip(cpu, cuda):
            assert b.is_cuda and torch.equal(a, b.cpu())


@pytest.mark.cuda
@given(data=st.data(), kind=st.sampled_from(sorted(KINDS)), metric=st.sampled_from(["iou", "ios"]),
       thr=st.sampled_from(THRESHOLDS + [0.0]), classes=st.sampled_from([0, 2]))
def test_cuda_equals_reference(data, kind, metric, thr, classes):
    boxes = data.draw(S.boxes(max_n=30, dtype=torch.float32))
    scores = _scores(data, len(boxes), torch.float32)
    idxs = None if classes == 0 else torch.arange(len(boxes)) % classes
    fn, ref = KINDS[kind]
    keep, merged, merged_scores = fn(boxes.cuda(), scores.cuda(), None if idxs is None else idxs.cuda(), thr, metric)
    ref_keep, ref_merged, ref_scores = ref(boxes, scores, idxs, thr, metric)
    assert keep.cpu().tolist() == ref_keep.tolist()
    assert torch.equal(merged.cpu(), ref_merged) and torch.equal(merged_scores.cpu(), ref_scores)


@pytest.mark.cuda
@pytest.mark.parametrize("op", ["greedy_nmm", "nmm"])
def test_opcheck_cuda(op):
    boxes, scores, idxs = _clustered(300, seed=1, classes=4)
    for args in [(boxes.cuda(), scores.cuda(), None, 0.5, "iou"), (boxes.cuda(), scores.cuda(), idxs.cuda(), 0.3, "ios")]:
        torch.library.opcheck(getattr(torch.ops.scalekit, op).default, args)


# ---- bad, empty, non-finite and huge input


@pytest.mark.parametrize("fn", [ops.greedy_nmm, ops.nmm])
def test_bad_input_names_the_argument(fn):
    boxes, scores = _t([[0, 0, 1, 1], [0, 0, 2, 2]]), torch.tensor([0.5, 0.4])
    cases = [
        ((boxes[:, :3], scores), {}, ValueError, "boxes must have shape \\[N, 4\\]"),
        ((boxes.long(), scores), {}, TypeError, "boxes must be a floating point tensor"),
        ((boxes, scores[:1]), {}, ValueError, "scores must have shape \\[N\\] with N = boxes.shape\\[0\\] = 2"),
        ((boxes, scores.long()), {}, TypeError, "scores must be a floating point tensor"),
        ((boxes, scores, torch.tensor([0.0, 1.0])), {}, TypeError, "idxs must be an integer tensor"),
        ((boxes, scores, torch.tensor([0])), {}, ValueError, "idxs must have shape \\[N\\]"),
        (([[0, 0, 1, 1]], scores), {}, TypeError, "boxes must be a torch.Tensor"),
        ((boxes, scores), {"match_threshold": float("nan")}, ValueError, "match_threshold must be a number"),
        ((boxes, scores), {"match_threshold": "0.5"}, TypeError, "match_threshold must be a number"),
        ((boxes, scores), {"metric": "giou"}, ValueError, "metric must be one of \\('iou', 'ios'\\)"),
        ((boxes, scores), {"metric": None}, ValueError, "metric must be one of"),
    ]
    for args, kwargs, error, message in cases:
        with pytest.raises(error, match=message):
            fn(*args, **kwargs)


@pytest.mark.parametrize("op", ["greedy_nmm", "nmm"])
def test_compiled_op_checks_its_arguments_too(op):
    f = getattr(torch.ops.scalekit, op)
    boxes, scores = _t([[0, 0, 1, 1]]), torch.tensor([0.5])
    with pytest.raises(ValueError, match="metric must be 'iou' or 'ios', got 'IOU'"):
        f(boxes, scores, None, 0.5, "IOU")
    with pytest.raises(ValueError, match="match_threshold must not be NaN"):
        f(boxes, scores, None, float("nan"), "iou")
    with pytest.raises(ValueError, match="scores must have shape"):
        f(boxes, scores[:0], None, 0.5, "iou")
    # A direct op call: ValueError for a wrong dtype too (the stable ABI carries no TypeError).
    with pytest.raises(ValueError, match="idxs must be an int64 tensor"):
        f(boxes, scores, torch.tensor([0], dtype=torch.int32), 0.5, "iou")


@pytest.mark.parametrize("fn", [ops.greedy_nmm, ops.nmm])
def test_empty_input(fn):
    keep, merged, merged_scores = fn(torch.zeros(0, 4, dtype=torch.float64), torch.zeros(0), torch.zeros(0, dtype=torch.int64))
    assert keep.shape == (0,) and keep.dtype == torch.int64
    assert merged.shape == (0, 4) and merged.dtype == torch.float64
    assert merged_scores.shape == (0,) and merged_scores.dtype == torch.float32


@pytest.mark.parametrize("fn", [ops.greedy_nmm, ops.nmm])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_input_is_refused(fn, bad):
    boxes, scores = _t([[0, 0, 1, 1], [0, 0, 2, 2]]), torch.tensor([0.5, 0.4])
    with pytest.raises(ValueError, match="boxes must be finite"):
        fn(boxes.index_put((torch.tensor([1]), torch.tensor([2])), torch.tensor(bad)), scores)
    with pytest.raises(ValueError, match="scores must be finite"):
        fn(boxes, torch.tensor([0.5, bad]))


@pytest.mark.parametrize("fn", [ops.greedy_nmm, ops.nmm])
def test_huge_coordinates_never_match_through_overflow(fn):
    # Areas overflow to inf: the metric is inf / inf = NaN, never a match, never a crash.
    big = 3e38
    boxes = _t([[-big, -big, big, big], [-big, -big, big, big], [0, 0, 1, 1]])
    keep, merged, _ = fn(boxes, torch.tensor([0.9, 0.8, 0.7]), match_threshold=0.5)
    assert keep.tolist() == [0, 1, 2]
    assert torch.equal(merged, boxes)
