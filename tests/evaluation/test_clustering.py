"""Clustering agreement against the definitions, pair by pair."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scalekit.evaluation import adjusted_rand_index, cluster_purity


def ari_by_pairs(a, b):
    """Hubert & Arabie's index from its definition: pair counts over every pair of items."""
    n = len(a)
    both = same_a = same_b = 0
    for i, j in itertools.combinations(range(n), 2):
        sa, sb = a[i] == a[j], b[i] == b[j]
        both += sa and sb
        same_a += sa
        same_b += sb
    total = n * (n - 1) / 2
    expected = same_a * same_b / total
    top = (same_a + same_b) / 2
    return 1.0 if top == expected else (both - expected) / (top - expected)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 4)), min_size=2, max_size=25))
def test_ari_equals_the_pair_count_definition(pairs):
    a, b = zip(*pairs)
    assert adjusted_rand_index(a, b) == pytest.approx(ari_by_pairs(a, b), abs=1e-12)


def test_ari_ignores_cluster_names_and_purity_counts_majorities():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, 100)
    assert adjusted_rand_index(a, (a + 3) * 7) == 1.0
    assert abs(adjusted_rand_index(a, rng.integers(0, 5, 100))) < 0.1  # chance
    assert cluster_purity([0, 0, 1, 1, 1, 2], ["a", "b", "c", "c", "a", "b"]) == pytest.approx(4 / 6)
    assert cluster_purity(np.arange(6), np.zeros(6)) == 1.0  # every item alone: trivially pure


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="a and b must label the same items"):
        adjusted_rand_index([0, 1], [0, 1, 2])
    with pytest.raises(ValueError, match="clusters must be a non-empty 1-D"):
        cluster_purity([], [])
