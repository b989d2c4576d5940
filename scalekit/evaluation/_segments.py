"""Input handling for temporal evaluation: per-video dicts of labels, segments
and scores, checked with errors that name the video and the class."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


@dataclass
class Segments:
    """All segments of one side (detections or ground truth), flattened over videos."""

    video: np.ndarray     # [N] int64 index into `videos`
    label: np.ndarray     # [N] int64
    start: np.ndarray     # [N] float64
    end: np.ndarray       # [N] float64
    score: np.ndarray | None  # [N] float64 (detections only)
    index: np.ndarray     # [N] int64 position within its video's arrays
    videos: list          # video ids, in first-seen order


def _array(value, name: str) -> np.ndarray:
    if hasattr(value, "detach"):  # torch tensors
        value = value.detach().cpu().numpy()
    return np.asarray(value)


NEGATIVE_STARTS = ("raise", "clip", "keep")


def read_side(name: str, data: Mapping, *, with_scores: bool, videos: list | None = None,
              unknown_videos: str = "raise", negative_starts: str = "raise") -> Segments:
    """Flatten ``{video_id: {"labels", "segments"[, "scores"]}}`` and check it.

    unknown_videos: ``"raise"`` or ``"keep"`` (appended to ``videos``: the
    ground truth has nothing there). negative_starts: ``"raise"``, ``"clip"``
    (to 0) or ``"keep"``.
    """
    if negative_starts not in NEGATIVE_STARTS:
        raise ValueError(f"negative_starts must be one of {NEGATIVE_STARTS}, got {negative_starts!r}")
    if not isinstance(data, Mapping):
        raise TypeError(f"{name} must be a dict {{video_id: {{'labels', 'segments'{', scores' if with_scores else ''}}}}}, "
                        f"got {type(data).__name__}")
    videos = list(videos) if videos is not None else list(data.keys())
    index_of = {v: i for i, v in enumerate(videos)}
    parts = {k: [] for k in ("video", "label", "segments", "score")}
    entries = []
    for vid, entry in data.items():  # shapes and dtypes here; values below, over all videos at once
        where = f"{name}[{vid!r}]"
        if vid not in index_of:
            if unknown_videos != "keep":
                raise ValueError(f"{where}: video {vid!r} is not in the ground truth; add it to the ground truth "
                                 f"(with no segments if it has none), or use tiou_map, whose protocols count "
                                 f"detections on unknown videos as false positives, as the official tools do")
            index_of[vid] = len(videos)
            videos.append(vid)
        if not isinstance(entry, Mapping) or "labels" not in entry or "segments" not in entry:
            raise ValueError(f"{where} must be a dict with 'labels' and 'segments'")
        labels = _array(entry["labels"], f"{where}['labels']")
        segments = _array(entry["segments"], f"{where}['segments']").astype(np.float64, copy=False)
        n = labels.shape[0] if labels.ndim == 1 else -1
        if labels.ndim != 1 or (labels.size and not np.issubdtype(labels.dtype, np.integer)):
            raise ValueError(f"{where}['labels'] must be a 1-D integer array, got {labels.dtype} {labels.shape}")
        if segments.size == 0 and n == 0:
            segments = segments.reshape(0, 2)
        if segments.shape != (n, 2):
            raise ValueError(f"{where}['segments'] must have shape [N, 2] with N = {n} labels, got {segments.shape}")
        if with_scores:
            if "scores" not in entry:
                raise ValueError(f"{where} must have 'scores'")
            scores = _array(entry["scores"], f"{where}['scores']").astype(np.float64, copy=False)
            if scores.shape != (n,):
                raise ValueError(f"{where}['scores'] must have shape [N] with N = {n}, got {scores.shape}")
            parts["score"].append(scores)
        parts["video"].append(index_of[vid])
        parts["label"].append(labels.astype(np.int64, copy=False))
        parts["segments"].append(segments)
        entries.append((where, n))

    counts = np.asarray([n for _, n in entries], dtype=np.int64)
    video = np.repeat(np.asarray(parts["video"], dtype=np.int64), counts)
    label = np.concatenate(parts["label"]) if entries else np.zeros(0, np.int64)
    segments = np.concatenate(parts["segments"]) if entries else np.zeros((0, 2))
    score = (np.concatenate(parts["score"]) if entries else np.zeros(0)) if with_scores else None
    ends = np.cumsum(counts)
    index = np.arange(label.size, dtype=np.int64) - np.repeat(ends - counts, counts)
    bad = (label < 0) | ~np.isfinite(segments).all(1) | (segments[:, 0] > segments[:, 1])
    if negative_starts == "raise":
        bad |= segments[:, 0] < 0
    if with_scores:
        bad |= np.isnan(score)
    for k in np.flatnonzero(bad)[:1]:  # the first video at fault, with the message of its first fault
        e = int(np.searchsorted(ends, k, "right"))
        lo = int(ends[e] - counts[e])
        _value_errors(entries[e][0], label[lo:ends[e]], segments[lo:ends[e]],
                      score[lo:ends[e]] if with_scores else None, negative_starts)
    if negative_starts == "clip" and (segments[:, 0] < 0).any():
        segments = np.maximum(segments, 0.0)
    return Segments(video, label, segments[:, 0].copy(), segments[:, 1].copy(), score, index, videos)


def _value_errors(where: str, labels, segments, scores, negative_starts: str) -> None:
    """Raise the ValueError of the first bad value of one video, in the order the checks are documented."""
    for i in np.flatnonzero(labels < 0)[:1]:
        raise ValueError(f"{where}: segment {i} has a negative class id {labels[i]}")
    for i in np.flatnonzero(~np.isfinite(segments).all(1))[:1]:
        raise ValueError(f"{where}: segment {i} of class {labels[i]} is not finite: {segments[i].tolist()}")
    for i in np.flatnonzero(segments[:, 0] > segments[:, 1])[:1]:
        raise ValueError(f"{where}: segment {i} of class {labels[i]} has start > end: {segments[i].tolist()}; "
                         f"its length and overlaps are undefined (ActivityNet's tool computes a negative "
                         f"length, THUMOS14's kit swaps the ends silently): swap start and end, or drop it")
    if negative_starts == "raise":
        for i in np.flatnonzero(segments[:, 0] < 0)[:1]:
            raise ValueError(f"{where}: segment {i} of class {labels[i]} starts before 0: "
                             f"{segments[i].tolist()}; pass negative_starts='clip' to clip segments at 0, "
                             f"or negative_starts='keep' to use them as they are (as the official tools do)")
    if scores is not None:
        for i in np.flatnonzero(np.isnan(scores))[:1]:
            raise ValueError(f"{where}: score {i} of class {labels[i]} is NaN")
    raise AssertionError("unreachable: a value was flagged but no check names it")  # pragma: no cover


def class_names(classes) -> dict | None:
    """``{class_id: name}`` when ``classes`` maps names to ids, else None."""
    if isinstance(classes, Mapping):
        names = {}
        for name, cid in classes.items():
            if isinstance(cid, bool) or not isinstance(cid, (int, np.integer)):
                raise TypeError(f"classes must map class names to integer ids, got {name!r}: {cid!r}")
            if int(cid) in names:
                raise ValueError(f"classes: id {int(cid)} is given to both {names[int(cid)]!r} and {name!r}")
            names[int(cid)] = name
        return names
    return None


def check_classes(name: str, side: Segments, classes) -> None:
    if classes is None:
        return
    ids = classes.values() if isinstance(classes, Mapping) else classes
    known = np.asarray(sorted(set(int(c) for c in ids)), dtype=np.int64)
    unknown = ~np.isin(side.label, known)
    for i in np.flatnonzero(unknown)[:1]:
        raise ValueError(f"{name}[{side.videos[side.video[i]]!r}]: segment {side.index[i]} has class "
                         f"{side.label[i]}, which is not one of the {len(known)} known classes")
