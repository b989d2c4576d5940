"""How well a clustering recovers known groups: R-FCN-3000's super-classes
(k-means over class-mean features, thesis §4.3) against the families the
classes come from."""

from __future__ import annotations

import numpy as np

__all__ = ["adjusted_rand_index", "cluster_purity"]


def _labels(x, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence of labels, got shape {list(x.shape)}")
    return np.unique(x, return_inverse=True)[1].reshape(-1)


def adjusted_rand_index(a, b) -> float:
    """The adjusted Rand index of two clusterings of the same items (Hubert & Arabie 1985):
    1 when they agree up to the names of the clusters, about 0 for chance agreement.

    Args:
        a, b: ``[N]`` cluster labels (any hashable values, numpy or tensor), item by item.

    Returns:
        the index; 1.0 where it is undefined (both clusterings one cluster, or
        each item its own cluster, in both).

    Example:
        >>> from scalekit.evaluation import adjusted_rand_index
        >>> adjusted_rand_index([0, 0, 1, 1], ["x", "x", "y", "y"])
        1.0
        >>> round(adjusted_rand_index([0, 0, 1, 1], [0, 1, 0, 1]), 3)
        -0.5
    """
    a, b = _labels(a, "a"), _labels(b, "b")
    if a.size != b.size:
        raise ValueError(f"a and b must label the same items, got {a.size} and {b.size} labels")
    table = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(table, (a, b), 1)

    def pairs(x):
        return (x * (x - 1) / 2).sum()

    index, rows, cols = pairs(table), pairs(table.sum(1)), pairs(table.sum(0))
    expected = rows * cols / (a.size * (a.size - 1) / 2) if a.size > 1 else 0.0
    top = (rows + cols) / 2
    return float((index - expected) / (top - expected)) if top != expected else 1.0


def cluster_purity(clusters, classes) -> float:
    """The fraction of items that belong to their cluster's most common class.

    Args:
        clusters: ``[N]`` cluster of each item.
        classes: ``[N]`` the known group (e.g. family) of each item.

    Example:
        >>> from scalekit.evaluation import cluster_purity
        >>> cluster_purity([0, 0, 0, 1], ["cat", "cat", "dog", "dog"])
        0.75
    """
    clusters, classes = _labels(clusters, "clusters"), _labels(classes, "classes")
    if clusters.size != classes.size:
        raise ValueError(f"clusters and classes must label the same items, got {clusters.size} and {classes.size}")
    table = np.zeros((clusters.max() + 1, classes.max() + 1))
    np.add.at(table, (clusters, classes), 1)
    return float(table.max(1).sum() / clusters.size)
