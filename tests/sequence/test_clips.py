"""clips_from_scores (scalekit.sequence): the thesis' staged thresholding (§5.4.2), its end
convention, and the round trip with scalekit.video.chunk_labels."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from scalekit.sequence import clips_from_scores
from scalekit.video import chunk_labels


def runs(labels):
    """(first chunk, last chunk, label) of each run of one non-zero label: the segments a label sequence means."""
    out, start = [], 0
    for i in range(1, len(labels) + 1):
        if i == len(labels) or labels[i] != labels[start]:
            if labels[start]:
                out.append((start, i - 1, labels[start]))
            start = i
    return out


@given(labels=st.lists(st.integers(0, 3), min_size=1, max_size=40), chunk_len=st.integers(1, 8),
       m=st.integers(1, 6), inclusive_end=st.booleans())
def test_chunk_labels_round_trip_through_perfect_scores(labels, chunk_len, m, inclusive_end):
    """segments -> chunk labels -> perfect scores -> clips gives the segments back, in their end convention."""
    shift = 1 if inclusive_end else 0
    segs = runs(labels)
    segments = [[a * chunk_len, (b + 1) * chunk_len - shift] for a, b, _ in segs]
    classes = [c - 1 for _, _, c in segs]
    got = chunk_labels(segments, classes, len(labels), chunk_len, inclusive_end=inclusive_end)
    assert got.tolist() == labels
    scores = torch.nn.functional.one_hot(got, 4)[:, 1:].double()  # perfect: 1 on the true class, background dropped
    clips = clips_from_scores(scores, chunk_len=chunk_len, m=m, inclusive_end=inclusive_end)
    for c in range(3):
        want = sorted((s, e) for (s, e), k in zip(segments, classes) if k == c)
        if want:
            assert sorted((a, b) for a, b, _ in clips[c]) == want
            assert all(score == 1.0 for _, _, score in clips[c])
        else:  # an absent class: one clip of the whole video, at score 0, never above a true one
            assert clips[c] == [(0, len(labels) * chunk_len - shift, 0.0)]


def test_few_instances_stay_separate_clips():
    """Two instances of a class and m = 5 (the thesis' value): the first stage cannot reach 5 clips;
    it keeps the two instances instead of lowering the threshold to one whole-video clip."""
    s = np.zeros((10, 1))
    s[[1, 2, 6], 0] = 1.0
    assert clips_from_scores(s, m=5)[0] == [(6, 18, 1.0), (36, 42, 1.0)]


def test_stages_keep_only_clips_that_share_no_chunk():
    s = np.array([[0.1, 0.5], [0.9, 0.5], [0.8, 0.5], [0.1, 0.5], [0.7, 0.5], [0.2, 0.5]])
    clips = clips_from_scores(s, m=1)
    assert clips[0] == [(6, 12, 0.9), (24, 30, 0.7)]  # stage 2 at 0.7: chunks 1-2 overlap stage 1, chunk 4 is new
    assert clips[1] == [(0, 36, 0.5)]  # a constant class is one clip
    assert clips_from_scores(s, m=1, inclusive_end=True)[0] == [(6, 11, 0.9), (24, 29, 0.7)]


@given(scores=st.lists(st.lists(st.sampled_from([0.0, 0.2, 0.4, 0.6, 0.8, 1.0]), min_size=2, max_size=2),
                       min_size=1, max_size=60),
       m=st.integers(1, 4), max_clips=st.integers(1, 50))
def test_properties(scores, m, max_clips):
    s = np.asarray(scores)
    for c, clips in clips_from_scores(s, chunk_len=6, m=m, max_clips=max_clips).items():
        assert 1 <= len(clips) <= max_clips
        assert [sc for _, _, sc in clips] == sorted((sc for _, _, sc in clips), reverse=True)
        covered = np.zeros(len(s), bool)
        for a, b, sc in clips:
            assert a % 6 == 0 and b % 6 == 0 and 0 <= a < b <= 6 * len(s)
            assert sc == s[a // 6 : b // 6, c].max()
            assert not covered[a // 6 : b // 6].any()  # kept clips never intersect
            covered[a // 6 : b // 6] = True


def test_old_import_path_still_resolves():
    from scalekit.evaluation import clips_from_scores as old

    assert old is clips_from_scores


@pytest.mark.parametrize("kwargs, error, match", [
    ({"scores": np.zeros(5)}, ValueError, r"scores must have shape \[T, C\]"),
    ({"scores": [[0.1], [float("nan")]]}, ValueError, r"scores must be finite, got nan at chunk 1, class 0"),
    ({"scores": np.zeros((3, 1)), "chunk_len": 0}, ValueError, "chunk_len must be >= 1, got 0"),
    ({"scores": np.zeros((3, 1)), "chunk_len": 6.5}, TypeError, "chunk_len must be an integer, got float 6.5"),
    ({"scores": np.zeros((3, 1)), "m": 0}, ValueError, "m must be >= 1"),
    ({"scores": np.zeros((3, 1)), "max_clips": -1}, ValueError, "max_clips must be >= 1"),
    ({"scores": np.zeros((3, 1)), "inclusive_end": 1}, TypeError, "inclusive_end must be True or False"),
])
def test_bad_arguments_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        clips_from_scores(**kwargs)


def test_numpy_scalars_and_empty_videos():
    assert clips_from_scores(np.ones((2, 1)), chunk_len=np.int64(6), m=np.int32(1))[0] == [(0, 12, 1.0)]
    assert clips_from_scores(np.zeros((0, 3))) == {0: [], 1: [], 2: []}
