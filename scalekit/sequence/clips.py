"""MSB-RNN's inference post-processing (thesis §5.4.2): ranked action clips from per-chunk scores.

The inverse of :func:`scalekit.video.chunk_labels` (segments to per-chunk
targets): with perfect scores, the clips are the labelled segments again,
under the same ``inclusive_end`` convention.
"""

from __future__ import annotations

import numpy as np

from scalekit._args import integer

__all__ = ["clips_from_scores"]


def _components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first, last) chunk of each run of True."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1


def clips_from_scores(scores, chunk_len: int = 6, m: int = 5, max_clips: int = 2500, *,
                      inclusive_end: bool = False) -> dict[int, list]:
    """Ranked action clips of one video from its per-chunk class scores (thesis §5.4.2).

    Per class: lower a threshold over the chunk scores, group above-threshold
    chunks into connected components (clips), and collect them in stages of
    ``m``, ``2m``, ``4m``, ... clips: a stage stops lowering the threshold at
    the first value that gives at least its number of components, and keeps
    only the components that share no chunk with clips kept before. Stops at
    ``max_clips`` clips, when the threshold reaches the lowest score, or
    after a stage that cannot reach its number. A clip's score is the max of
    its chunks' scores.

    Choices where the thesis is silent: the threshold steps through the
    distinct score values (components change only there), starting from the
    highest; a chunk is above the threshold when its score is ``>=`` it;
    "intersect" means sharing a chunk; a stage that cannot reach its number
    (components merge as the threshold falls) ends at the threshold, of those
    still ahead, that gives the most components (the highest such one) and is
    the last stage — ending it at the lowest score instead would make a class
    with fewer than ``m`` separate peaks one clip spanning the whole video;
    when the last stage overshoots ``max_clips`` the highest-scoring clips are
    kept.

    Args:
        scores: ``[T, C]`` per-chunk scores (one row per chunk, background
            excluded), a numpy array, a tensor or nested lists; finite.
        chunk_len: frames per chunk (6 in MSB-RNN, §5.3); chunk ``i`` covers
            frames ``i * chunk_len`` to ``(i + 1) * chunk_len - 1``.
        m: clips in the first stage (5 in the thesis, §5.4.2).
        max_clips: clips per class at most (2,500 in the thesis, §5.4.2).
        inclusive_end: the end convention of the clips, to match the ground
            truth they are compared with: ``False`` (default), ``end_frame``
            is one past the clip's last frame, ``(b + 1) * chunk_len`` for a
            clip whose last chunk is ``b`` (half-open, as Python ranges and
            ActivityNet); ``True``, ``end_frame`` is the last frame itself,
            ``(b + 1) * chunk_len - 1`` (inclusive frame ranges, as MPII
            Cooking 2 and Shopping annotations and
            :func:`~scalekit.evaluation.midpoint_map`'s default).

    Returns:
        ``{class_id: [(start_frame, end_frame, score), ...]}`` for every
        column ``class_id`` of ``scores``, by decreasing score (ties: in the
        order found); an empty list for every class when ``T = 0``.

    Example:
        >>> import numpy as np
        >>> from scalekit.sequence import clips_from_scores
        >>> s = np.array([[0.1], [0.9], [0.8], [0.1], [0.7], [0.2]])
        >>> # stage 1 (1 clip): >= 0.9 gives chunk 1; stage 2 (2 clips): >= 0.7 gives
        >>> # chunks 1-2 (overlaps, dropped) and 4; stage 3 never reaches 4 clips.
        >>> clips_from_scores(s, m=1)[0]
        [(6, 12, 0.9), (24, 30, 0.7)]
        >>> clips_from_scores(s, m=1, inclusive_end=True)[0]  # inclusive frame ranges
        [(6, 11, 0.9), (24, 29, 0.7)]
    """
    s = np.asarray(scores.detach().cpu() if hasattr(scores, "detach") else scores, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"scores must have shape [T, C], got {s.shape}")
    if not np.isfinite(s).all():
        bad = np.argwhere(~np.isfinite(s))[0]
        raise ValueError(f"scores must be finite, got {s[tuple(bad)]} at chunk {bad[0]}, class {bad[1]}")
    chunk_len = integer("chunk_len", chunk_len, minimum=1)
    m = integer("m", m, minimum=1)
    max_clips = integer("max_clips", max_clips, minimum=1)
    if not isinstance(inclusive_end, (bool, np.bool_)):
        raise TypeError(f"inclusive_end must be True or False, got {inclusive_end!r}")
    end_shift = 1 if inclusive_end else 0
    t = s.shape[0]
    result: dict[int, list] = {}
    for c in range(s.shape[1]):
        col = s[:, c]
        if t == 0:
            result[c] = []
            continue
        # Components after adding chunks in decreasing score: a chunk adds one,
        # minus one for each neighbour already in (vectorised union-find).
        order = np.argsort(-col, kind="stable")
        rank = np.empty(t, np.int64)
        rank[order] = np.arange(t)
        left = np.r_[False, rank[:-1] < rank[1:]]
        right = np.r_[rank[1:] < rank[:-1], False]
        count_after = np.cumsum(1 - left[order].astype(np.int64) - right[order])
        values = col[order]
        last_of_value = np.r_[values[1:] != values[:-1], True]
        thresholds, counts = values[last_of_value], count_after[last_of_value]
        kept = np.zeros(t, dtype=bool)
        clips: list[tuple[int, int, float]] = []
        target, at = m, 0
        while at < thresholds.size and len(clips) < max_clips:
            reach = np.flatnonzero(counts[at:] >= target)
            last_stage = reach.size == 0  # no later stage can reach its (larger) number either
            at = at + (int(np.argmax(counts[at:])) if last_stage else int(reach[0]))
            first, last = _components(col >= thresholds[at])
            covered = np.concatenate([[0], np.cumsum(kept)])
            new = covered[last + 1] - covered[first] == 0
            for a, b in zip(first[new], last[new]):
                clips.append((int(a) * chunk_len, (int(b) + 1) * chunk_len - end_shift, float(col[a : b + 1].max())))
                kept[a : b + 1] = True
            if last_stage:
                break
            target, at = target * 2, at + 1
        order_out = sorted(range(len(clips)), key=lambda i: -clips[i][2])[:max_clips]
        result[c] = [clips[i] for i in sorted(order_out, key=lambda i: (-clips[i][2], i))]
    return result
