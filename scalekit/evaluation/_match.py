"""Greedy one-to-one matching of detections to ground truth, vectorised over
videos, in memory bounded by the number of segments.

Candidate pairs share a group (a video). They are never built for a whole
class at once: :func:`pieces` cuts the side that drives the matching (the
detections in decreasing score, or the ground truths in their matching order)
into consecutive pieces of at most :data:`PAIR_BUDGET` pairs, and the state
that carries the greedy order from one piece to the next (which ground truths,
or detections, are still free) is one bool per segment. A piece holds at least
one driving segment, so that memory is O(detections + ground truth + budget)
whatever the sizes, and the results are those of one piece holding everything.
"""

from __future__ import annotations

import numpy as np

PAIR_BUDGET = 1 << 18
"""Candidate pairs per piece (about 70 bytes each while a piece is matched):
large enough that numpy's per-call overhead is amortised, small enough that a
piece stays under about 20 MB."""


DENSE_GROUPS = 1 << 18
"""Group ids below this (or below 4x the members) are looked up in a table of that size (at most 4 MiB)."""


class GroupIndex:
    """The members of each group of one side, to pair them with the other side's."""

    def __init__(self, group: np.ndarray) -> None:
        self.order = np.argsort(group, kind="stable")
        self.sorted = group[self.order]
        self._table = None  # small non-negative ids: each group's (first, count) by lookup, not by search
        if group.size and self.sorted[0] >= 0 and self.sorted[-1] < max(4 * group.size, DENSE_GROUPS):
            count = np.bincount(group)
            self._table = (np.cumsum(count) - count, count)

    def _where(self, group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """([N] first position in ``sorted``, [N] count) of each given group."""
        if self._table is None:
            lo = np.searchsorted(self.sorted, group, "left")
            return lo, np.searchsorted(self.sorted, group, "right") - lo
        first, count = self._table
        known = (group >= 0) & (group < count.size)
        at = np.where(known, group, 0)
        return first[at], np.where(known, count[at], 0)

    def counts(self, group: np.ndarray) -> np.ndarray:
        """[N] number of members that share each given group."""
        return self._where(group)[1]

    def pairs(self, group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """All (position in ``group``, member index) pairs of equal group, members in index order."""
        lo, n = self._where(group)
        total = int(n.sum())
        if total == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        which = np.repeat(np.arange(group.size), n)
        j = np.arange(total) - np.repeat(np.cumsum(n) - n, n)
        return which, self.order[lo[which] + j]


def pieces(cost: np.ndarray, budget: int | None = None):
    """Consecutive ``slice``s of ``range(len(cost))``, each of total cost at most
    ``budget`` (or one element, if that alone costs more)."""
    budget = PAIR_BUDGET if budget is None else budget
    n = cost.size
    if n == 0:
        return
    cum = np.cumsum(cost)
    start = 0
    while start < n:
        base = cum[start - 1] if start else 0
        end = max(int(np.searchsorted(cum, base + budget, "right")), start + 1)
        yield slice(start, end)
        start = end


def greedy_match(det_rank: np.ndarray, det_group: np.ndarray, pair_det: np.ndarray, pair_gt: np.ndarray,
                 pair_cost: np.ndarray, free: np.ndarray) -> np.ndarray:
    """Matched ground truth of every detection (-1: none); ``free`` is updated in place.

    det_rank: [D] order of the detections (0 = highest score); pairs are the
    candidate (detection, ground truth) pairs of one group each; among its free
    candidates a detection takes the one of lowest cost, ties to the lower
    ground-truth index. Each round matches, in every group at once, the
    earliest detection that still has a free candidate; there are at most
    (largest number of matches in a group) + 1 rounds, each over the pairs
    still open (pairs of decided detections and taken ground truths are
    dropped). ``free``: [G] bool, the ground truths not taken by detections
    ranked before these.
    """
    matched = np.full(det_rank.shape[0], -1, dtype=np.int64)
    if pair_det.size == 0:
        return matched
    group = det_group[pair_det]
    order = np.lexsort((pair_gt, pair_cost, det_rank[pair_det], group))
    pd, pg, pgroup = pair_det[order], pair_gt[order], group[order]
    prank = det_rank[pd]
    groups, pgroup_dense = np.unique(pgroup, return_inverse=True)
    next_rank = np.full(groups.size, np.iinfo(np.int64).min, dtype=np.int64)  # ranked below: done
    while True:
        keep = np.flatnonzero(free[pg] & (prank >= next_rank[pgroup_dense]))
        if keep.size == 0:
            return matched
        pd, pg, prank, pgroup_dense = pd[keep], pg[keep], prank[keep], pgroup_dense[keep]
        first = np.r_[0, np.flatnonzero(pgroup_dense[1:] != pgroup_dense[:-1]) + 1]  # earliest pair per group
        matched[pd[first]] = pg[first]
        free[pg[first]] = False
        next_rank[pgroup_dense[first]] = prank[first] + 1
