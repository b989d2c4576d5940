"""Greedy one-to-one matching of detections to ground truth, vectorised over
videos: each detection, in decreasing score, takes the best still-free ground
truth among its candidates; a ground truth is taken at most once."""

from __future__ import annotations

import numpy as np


def cross_pairs(det_group: np.ndarray, gt_group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All (detection, ground truth) index pairs that share a group (video), vectorised."""
    if det_group.size == 0 or gt_group.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    d_order = np.argsort(det_group, kind="stable")
    g_order = np.argsort(gt_group, kind="stable")
    groups = np.union1d(det_group, gt_group)
    d_lo = np.searchsorted(det_group[d_order], groups, "left")
    d_n = np.searchsorted(det_group[d_order], groups, "right") - d_lo
    g_lo = np.searchsorted(gt_group[g_order], groups, "left")
    g_n = np.searchsorted(gt_group[g_order], groups, "right") - g_lo
    per = d_n * g_n
    total = int(per.sum())
    if total == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    which = np.repeat(np.arange(groups.size), per)
    j = np.arange(total) - np.repeat(np.cumsum(per) - per, per)
    d = d_order[d_lo[which] + j // g_n[which]]
    g = g_order[g_lo[which] + j % g_n[which]]
    return d, g


def greedy_match(det_rank: np.ndarray, det_group: np.ndarray, pair_det: np.ndarray, pair_gt: np.ndarray,
                 pair_cost: np.ndarray, n_gt: int) -> np.ndarray:
    """Matched ground truth of every detection (-1: none).

    det_rank: [D] order of the detections (0 = highest score); pairs are the
    candidate (detection, ground truth) pairs of one group each; among its free
    candidates a detection takes the one of lowest cost, ties to the lower
    ground-truth index. Each round matches, in every group at once, the
    earliest detection that still has a free candidate; there are at most
    (largest number of ground truths in a group) + 1 rounds.
    """
    matched = np.full(det_rank.shape[0], -1, dtype=np.int64)
    if pair_det.size == 0:
        return matched
    group = det_group[pair_det]
    order = np.lexsort((pair_gt, pair_cost, det_rank[pair_det], group))
    pd, pg, pgroup = pair_det[order], pair_gt[order], group[order]
    prank = det_rank[pd]
    free = np.ones(n_gt, dtype=bool)
    groups, pgroup_dense = np.unique(pgroup, return_inverse=True)
    next_rank = np.zeros(groups.size, dtype=np.int64)  # detections ranked below this are done
    while True:
        valid = free[pg] & (prank >= next_rank[pgroup_dense])
        idx = np.flatnonzero(valid)
        if idx.size == 0:
            return matched
        g_of = pgroup_dense[idx]
        first = idx[np.r_[True, g_of[1:] != g_of[:-1]]]  # earliest valid pair per group
        matched[pd[first]] = pg[first]
        free[pg[first]] = False
        next_rank[pgroup_dense[first]] = prank[first] + 1
