"""Temporal evaluation: hand-worked cases, references of ActivityNet's and the
mid-point-hit algorithms on random data, clip extraction, bad input."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from scalekit.evaluation import average_precision, clips_from_scores, clips_to_detections, midpoint_map, tiou_map


def _det(labels, segments, scores):
    return {"labels": np.asarray(labels), "segments": np.asarray(segments, float).reshape(-1, 2),
            "scores": np.asarray(scores, float)}


def _gt(labels, segments):
    return {"labels": np.asarray(labels), "segments": np.asarray(segments, float).reshape(-1, 2)}


class TestAveragePrecision:
    def test_hand_worked(self):
        tp = [True, False, True, False, True]  # precisions at the hits: 1, 2/3, 3/5
        assert average_precision(tp, 4) == pytest.approx((1 + 2 / 3 + 3 / 5) / 4)
        # VOC all-point: envelope 1 up to recall 1/4, then 2/3 to 2/4, then 3/5 to 3/4
        assert average_precision(tp, 4, "voc_all_point") == pytest.approx(0.25 * (1 + 2 / 3 + 3 / 5))
        # 11-point: recall 0 .. 0.2 -> 1 (3 points), 0.3 .. 0.5 -> 2/3 (3), 0.6, 0.7 -> 3/5 (2), above -> 0
        assert average_precision(tp, 4, "11_point") == pytest.approx((3 * 1 + 3 * 2 / 3 + 2 * 3 / 5) / 11)

    def test_edges(self):
        assert average_precision([], 3) == 0.0
        assert average_precision([True, True], 2) == 1.0
        with pytest.raises(ValueError, match="ap must be one of"):
            average_precision([True], 1, "voc")
        with pytest.raises(ValueError, match="num_positives must be > 0"):
            average_precision([True], 0)


class TestMidpoint:
    def test_hand_worked_two_videos_two_classes(self):
        gt = {"a": _gt([0, 0, 1], [[0, 9], [20, 29], [40, 59]]), "b": _gt([0], [[5, 15]])}
        det = {
            # class 0 in score order: a[0,8] mid 4 -> TP (gt a0); b[4,16] mid 10 -> TP (gt b0);
            # a[2,6] mid 4 -> FP (a0 taken); a[30,40] mid 35 -> FP (no interval); a[22,28] -> TP (a1)
            "a": _det([0, 0, 0, 0, 1], [[0, 8], [2, 6], [30, 40], [22, 28], [0, 10]], [0.9, 0.7, 0.6, 0.5, 0.8]),
            "b": _det([0], [[4, 16]], [0.8]),
        }
        r = midpoint_map(det, gt)
        # class 0: hits at ranks 1, 2, 5 -> (1 + 1 + 3/5) / 3; class 1: one FP, no hit -> 0
        assert r["per_class"][0] == pytest.approx((1 + 1 + 3 / 5) / 3)
        assert r["per_class"][1] == 0.0
        assert r["mAP"] == pytest.approx(((1 + 1 + 3 / 5) / 3 + 0) / 2)
        assert r["matches"] == [("a", 0, 0, 0), ("a", 0, 3, 1), ("b", 0, 0, 0)]

    def test_end_convention(self):
        gt = {"v": _gt([0], [[0, 10]])}
        det = {"v": _det([0], [[6, 14]], [1.0])}  # mid-point exactly 10
        assert midpoint_map(det, gt, inclusive_end=True)["mAP"] == 1.0
        assert midpoint_map(det, gt, inclusive_end=False)["mAP"] == 0.0

    def test_classes_without_ground_truth_or_detections(self):
        gt = {"v": _gt([0, 1], [[0, 10], [20, 30]])}
        det = {"v": _det([0, 2], [[0, 10], [20, 30]], [0.9, 0.8])}
        r = midpoint_map(det, gt)
        assert r["per_class"] == {0: 1.0, 1: 0.0}  # class 1: ground truth, no detection -> AP 0
        assert r["ignored_classes"] == [2]  # class 2: detections, no ground truth -> left out
        assert r["mAP"] == 0.5

    def test_overlapping_intervals_go_to_the_nearest_centre(self):
        gt = {"v": _gt([0, 0], [[0, 100], [46, 58]])}  # centres 50 and 52
        det = {"v": _det([0, 0], [[47, 57], [50, 54]], [0.9, 0.8])}  # both mid-points 52
        r = midpoint_map(det, gt)
        assert r["matches"] == [("v", 0, 0, 1), ("v", 0, 1, 0)]
        assert r["mAP"] == 1.0

    def test_empty(self):
        gt = {"v": _gt([0], [[0, 10]]), "w": _gt([], [])}
        assert midpoint_map({}, gt)["mAP"] == 0.0
        assert midpoint_map({"w": _det([], [], [])}, gt)["per_class"] == {0: 0.0}
        assert midpoint_map({}, {"v": _gt([], [])})["per_class"] == {}

    def test_tensors_are_accepted(self):
        gt = {"v": {"labels": torch.tensor([0]), "segments": torch.tensor([[0.0, 10.0]])}}
        det = {"v": {"labels": torch.tensor([0]), "segments": torch.tensor([[2.0, 8.0]]), "scores": torch.tensor([0.5])}}
        assert midpoint_map(det, gt)["mAP"] == 1.0


class TestTIoU:
    def test_hand_worked(self):
        gt = {"v": _gt([0, 0], [[0, 10], [20, 30]])}
        # tIoUs: d0 vs g0 = 8/10, d1 vs g0 = 5/10 ... d2 vs g1 = 1.0
        det = {"v": _det([0, 0, 0], [[0, 8], [0, 5], [20, 30]], [0.9, 0.8, 0.7])}
        r = tiou_map(det, gt, thresholds=(0.5, 0.9))
        # 0.5: TP, FP (g0 taken), TP -> VOC all-point: 0.5 * 1 + 0.5 * 2/3
        # 0.9: FP, FP, TP -> 0.5 * 1/3
        np.testing.assert_allclose(r["per_class"][0], [0.5 + 0.5 * 2 / 3, 0.5 / 3])
        assert r["mAP"] == pytest.approx((0.5 + 1 / 3 + 1 / 6) / 2)

    def test_inclusive_end_lengths(self):
        gt = {"v": _gt([0], [[0, 9]])}
        det = {"v": _det([0], [[5, 9]], [1.0])}
        assert tiou_map(det, gt, thresholds=(0.5,))["mAP"] == 0.0  # 4 / 9 < 0.5
        assert tiou_map(det, gt, thresholds=(0.5,), inclusive_end=True)["mAP"] == 1.0  # 5 / 10


def _activitynet_reference(det, gt, thresholds):
    """ActivityNet's compute_average_precision_detection, loop for loop, per class."""
    out = {}
    classes = sorted({int(c) for g in gt.values() for c in g["labels"]})
    for c in classes:
        gts = [(v, j, g["segments"][j]) for v, g in gt.items() for j in range(len(g["labels"])) if g["labels"][j] == c]
        dets = [(v, d["segments"][i], d["scores"][i]) for v, d in det.items()
                for i in range(len(d["labels"])) if d["labels"][i] == c]
        dets = [dets[i] for i in np.argsort([-s for _, _, s in dets], kind="stable")]
        aps = []
        for thr in thresholds:
            lock = set()
            tp = []
            for v, seg, _ in dets:
                cands = [(k, s) for k, (gv, _, s) in enumerate(gts) if gv == v]
                ious = []
                for k, s in cands:
                    inter = max(0.0, min(seg[1], s[1]) - max(seg[0], s[0]))
                    union = (seg[1] - seg[0]) + (s[1] - s[0]) - inter
                    ious.append((inter / union if union > 0 else 0.0, k))
                hit = False
                for iou, k in sorted(ious, key=lambda t: (-t[0], t[1])):
                    if iou < thr:
                        break
                    if k in lock:
                        continue
                    lock.add(k)
                    hit = True
                    break
                tp.append(hit)
            tp = np.array(tp, bool)
            if not len(gts):
                continue
            prec = np.cumsum(tp) / np.arange(1, len(tp) + 1) if len(tp) else np.zeros(0)
            rec = np.cumsum(tp) / len(gts) if len(tp) else np.zeros(0)
            mprec = np.hstack([[0], prec, [0]])
            mrec = np.hstack([[0], rec, [1]])
            for i in range(len(mprec) - 1)[::-1]:
                mprec[i] = max(mprec[i], mprec[i + 1])
            idx = np.where(mrec[1:] != mrec[:-1])[0] + 1
            aps.append(np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx]))
        out[c] = np.array(aps)
    return out


def _midpoint_reference(det, gt, inclusive_end):
    out = {}
    classes = sorted({int(c) for g in gt.values() for c in g["labels"]})
    for c in classes:
        gts = [(v, s) for v, g in gt.items() for s, lab in zip(g["segments"], g["labels"]) if lab == c]
        dets = [(v, s, sc) for v, d in det.items() for s, lab, sc in zip(d["segments"], d["labels"], d["scores"]) if lab == c]
        dets = [dets[i] for i in np.argsort([-s for _, _, s in dets], kind="stable")]
        taken, tp = set(), []
        for v, seg, _ in dets:
            m = (seg[0] + seg[1]) / 2
            hits = [(abs(m - (s[0] + s[1]) / 2), k) for k, (gv, s) in enumerate(gts)
                    if gv == v and s[0] <= m and (m <= s[1] if inclusive_end else m < s[1]) and k not in taken]
            if hits:
                taken.add(min(hits)[1])
            tp.append(bool(hits))
        out[c] = average_precision(tp, len(gts)) if gts else None
    return out


@st.composite
def _video_sets(draw, min_len=0):
    n_videos, n_classes = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    seg = st.tuples(st.integers(0, 40), st.integers(min_len, 12)).map(lambda t: [float(t[0]), float(t[0] + t[1])])
    gt, det = {}, {}
    for v in range(n_videos):
        k = draw(st.integers(0, 4))
        gt[f"v{v}"] = _gt(draw(st.lists(st.integers(0, n_classes - 1), min_size=k, max_size=k)),
                          draw(st.lists(seg, min_size=k, max_size=k)))
        k = draw(st.integers(0, 8))
        det[f"v{v}"] = _det(draw(st.lists(st.integers(0, n_classes - 1), min_size=k, max_size=k)),
                            draw(st.lists(seg, min_size=k, max_size=k)),
                            draw(st.lists(st.sampled_from([0.1, 0.3, 0.5, 0.9]), min_size=k, max_size=k)))
    return det, gt


@given(data=_video_sets(min_len=1))
def test_tiou_map_equals_activitynet_reference(data):
    # positive lengths: two zero-length segments have tIoU 0/0, which tiou_map refuses
    det, gt = data
    thresholds = (0.1, 0.5, 0.75, 1.0)
    r = tiou_map(det, gt, thresholds=thresholds)
    ref = _activitynet_reference(det, gt, thresholds)
    assert set(r["per_class"]) == set(ref)
    for c in ref:
        np.testing.assert_allclose(r["per_class"][c], ref[c], atol=1e-12)


@given(data=_video_sets(), inclusive_end=st.booleans())
def test_midpoint_map_equals_reference(data, inclusive_end):
    det, gt = data
    r = midpoint_map(det, gt, inclusive_end=inclusive_end)
    ref = _midpoint_reference(det, gt, inclusive_end)
    for c, ap in ref.items():
        assert r["per_class"][c] == pytest.approx(ap, abs=1e-12)


class TestClips:
    """clips_from_scores with the evaluation's clips_to_detections; its own properties are in
    tests/sequence/test_clips.py."""

    def test_stages_and_scores(self):
        s = np.array([[0.1, 0.5], [0.9, 0.5], [0.8, 0.5], [0.1, 0.5], [0.7, 0.5], [0.2, 0.5]])
        clips = clips_from_scores(s, m=1)
        assert clips[0] == [(6, 12, 0.9), (24, 30, 0.7)]
        assert clips[1] == [(0, 36, 0.5)]  # a constant class is one clip

    def test_to_detections_round_trip(self):
        s = np.random.default_rng(0).random((50, 3))
        clips = clips_from_scores(s)
        det = clips_to_detections(clips)
        assert len(det["labels"]) == sum(len(v) for v in clips.values())
        r = midpoint_map({"v": det}, {"v": _gt([0, 1, 2], [[0, 299], [0, 299], [0, 299]])})
        assert set(r["per_class"]) == {0, 1, 2}


class TestBadInput:
    gt = {"v": _gt([0], [[0, 10]])}

    @pytest.mark.parametrize(
        "det, match",
        [
            ({"v": _det([0], [[5, 2]], [0.5])}, r"detections\['v'\]: segment 0 of class 0 has start > end"),
            ({"v": _det([0], [[-3, 2]], [0.5])}, r"detections\['v'\]: segment 0 of class 0 starts before 0"),
            ({"v": _det([1], [[0, 2]], [float("nan")])}, r"detections\['v'\]: score 0 of class 1 is NaN"),
            ({"v": {"labels": [0], "segments": [[0, 2]]}}, r"detections\['v'\] must have 'scores'"),
            ({"v": _det([0, 1], [[0, 2]], [0.5, 0.5])}, r"segments'\] must have shape \[N, 2\] with N = 2"),
        ],
    )
    def test_messages_name_video_and_class(self, det, match):
        for fn in (midpoint_map, tiou_map):
            with pytest.raises(ValueError, match=match):
                fn(det, self.gt)

    def test_unknown_video(self):
        det = {"w": _det([0], [[0, 2]], [0.5])}
        with pytest.raises(ValueError, match=r"detections\['w'\]: video 'w' is not in the ground truth; add it"):
            midpoint_map(det, self.gt)
        assert tiou_map(det, self.gt)["unknown_videos"] == ["w"]  # a false positive, as the official tools

    def test_unknown_classes(self):
        det = {"v": _det([7], [[0, 2]], [0.5])}
        with pytest.raises(ValueError, match=r"detections\['v'\]: segment 0 has class 7, which is not one of the 3"):
            midpoint_map(det, self.gt, classes=range(3))

    def test_other_arguments(self):
        with pytest.raises(ValueError, match="ap must be one of"):
            midpoint_map({}, self.gt, ap="11-point")
        with pytest.raises(ValueError, match="scores must have shape"):
            clips_from_scores(np.zeros(5))
        with pytest.raises(TypeError, match="ground_truth must be a dict"):
            midpoint_map({}, [1, 2])


class TestMemory:
    """Candidate pairs are built a piece at a time (issue 27): memory O(detections
    + ground truth), never O(detections x ground truth) of a video."""

    @pytest.mark.parametrize("fn", ["activitynet", "thumos14", "midpoint"])
    def test_peak_memory_is_linear_in_the_segments(self, fn):
        import tracemalloc

        # one video, one class: 4,000 x 1,000 = 4M pairs, about 280 MB as all pairs at
        # once (the pairwise version); in pieces the peak stays under 64 MB
        rng = np.random.default_rng(0)
        d, g = 4000, 1000
        s = rng.uniform(0, 1e5, g)
        gt = {"v": _gt(np.zeros(g, int), np.stack([s, s + rng.uniform(10, 500, g)], 1))}
        s = rng.uniform(0, 1e5, d)
        det = {"v": _det(np.zeros(d, int), np.stack([s, s + rng.uniform(10, 500, d)], 1), rng.random(d))}
        call = {"activitynet": lambda: tiou_map(det, gt, thresholds=(0.5,)),
                "thumos14": lambda: tiou_map(det, gt, protocol="thumos14", thresholds=(0.5,)),
                "midpoint": lambda: midpoint_map(det, gt)}[fn]
        tracemalloc.start()
        try:
            r = call()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 64 * 2**20, f"peak {peak / 2**20:.0f} MB"
        assert 0 < r["mAP"] < 1

    @pytest.mark.parametrize("seed", range(6))
    @pytest.mark.parametrize("budget", [1, 3, 40])
    def test_pieces_give_the_results_of_one_piece(self, seed, budget):
        from scalekit.evaluation import _match

        # dense: many detections compete for few ground truths in each video
        rng = np.random.default_rng(seed)
        det, gt = {}, {}
        for v in ("v0", "v1", "v2"):
            s = rng.integers(0, 20, 6).astype(float)
            gt[v] = _gt(rng.integers(0, 3, 6), np.stack([s, s + rng.integers(1, 9, 6)], 1))
            s = rng.integers(0, 20, 30).astype(float)
            det[v] = _det(rng.integers(0, 3, 30), np.stack([s, s + rng.integers(1, 9, 30)], 1),
                          rng.choice([0.2, 0.5, 0.7, 0.9], 30))
        amb = {"v0": np.array([[3.0, 9.0]]), "v2": np.array([[0.0, 1.0], [30.0, 50.0]])}
        calls = [lambda: tiou_map(det, gt, thresholds=(0.1, 0.5, 0.75)),
                 lambda: tiou_map(det, gt, protocol="thumos14", ambiguous=amb),
                 lambda: midpoint_map(det, gt)]
        whole = [c() for c in calls]
        saved = _match.PAIR_BUDGET
        _match.PAIR_BUDGET = budget
        try:
            split = [c() for c in calls]
        finally:
            _match.PAIR_BUDGET = saved
        for a, b in zip(whole, split):
            assert a["per_class"].keys() == b["per_class"].keys()
            for c in a["per_class"]:
                np.testing.assert_array_equal(a["per_class"][c], b["per_class"][c])
        assert whole[2]["matches"] == split[2]["matches"]


@given(st.lists(st.integers(0, 30), max_size=60), st.lists(st.integers(-2, 33), max_size=40))
def test_group_index_table_and_search_agree(members, queries):
    """GroupIndex looks small ids up in a table and searches large ones: the same pairs."""
    from scalekit.evaluation._match import GroupIndex

    members, queries = np.asarray(members, np.int64), np.asarray(queries, np.int64)
    small = GroupIndex(members)
    large = GroupIndex(members + 10**12)  # beyond any table
    assert (small._table is not None or members.size == 0) and large._table is None
    shifted = np.where(queries >= 0, queries + 10**12, queries)
    np.testing.assert_array_equal(small.counts(queries), large.counts(shifted))
    np.testing.assert_array_equal(small.counts(queries), [(members == g).sum() for g in queries])
    for a, b in zip(small.pairs(queries), large.pairs(shifted)):
        np.testing.assert_array_equal(a, b)
    which, member = small.pairs(queries)
    assert sorted(zip(which.tolist(), member.tolist())) == [
        (i, j) for i, g in enumerate(queries.tolist()) for j, m in enumerate(members.tolist()) if m == g]
