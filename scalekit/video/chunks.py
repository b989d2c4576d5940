"""Chunking and frame-rate sampling of videos (MSB-RNN works on 6-frame chunks, thesis §5.3),
and per-chunk training targets from annotated segments."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from scalekit._args import integer, real

__all__ = ["Chunk", "chunk_frames", "chunk_centres", "chunk_labels", "resample_indices", "read_video_frames"]


@dataclass
class Chunk:
    """``frames[start:end]`` of a video, the ``index``-th chunk."""

    index: int
    start: int
    end: int
    frames: Tensor


def chunk_frames(frames, chunk_len: int = 6, *, drop_last: bool = False) -> Iterator[Chunk]:
    """Split ``[T, C, H, W]`` frames (or any iterable of ``[C, H, W]`` frames) into chunks.

    The last chunk may be shorter unless ``drop_last``. Iterables are read
    lazily (one chunk in memory at a time), so a decoded stream can be chunked.

    Example:
        >>> import torch
        >>> [(c.start, c.end) for c in chunk_frames(torch.zeros(14, 3, 8, 8))]
        [(0, 6), (6, 12), (12, 14)]
    """
    chunk_len = integer("chunk_len", chunk_len, minimum=1)
    if isinstance(frames, Tensor):
        if frames.dim() == 0:
            raise ValueError("frames must be [T, ...] (time first), got a 0-d tensor")
    elif not hasattr(frames, "__iter__"):
        raise TypeError(f"frames must be a [T, C, H, W] tensor or an iterable of frames, got {type(frames).__name__}")
    return _chunks(frames, chunk_len, bool(drop_last))


def _chunks(frames, chunk_len: int, drop_last: bool) -> Iterator[Chunk]:
    if isinstance(frames, Tensor):
        for i, start in enumerate(range(0, frames.shape[0], chunk_len)):
            end = min(start + chunk_len, frames.shape[0])
            if drop_last and end - start < chunk_len:
                return
            yield Chunk(i, start, end, frames[start:end])
        return
    buffer, start, index = [], 0, 0
    for frame in frames:
        buffer.append(torch.as_tensor(frame))
        if len(buffer) == chunk_len:
            yield Chunk(index, start, start + chunk_len, torch.stack(buffer))
            start, index, buffer = start + chunk_len, index + 1, []
    if buffer and not drop_last:
        yield Chunk(index, start, start + len(buffer), torch.stack(buffer))


def chunk_centres(num_chunks: int, chunk_len: int = 6) -> Tensor:
    """``[num_chunks]`` int64: the centre frame ``i * chunk_len + chunk_len // 2`` of each chunk.

    The frame a chunk is represented by (thesis §5.4.2): its appearance input
    and the frame its pixel trajectories start from, and the frame whose label
    :func:`chunk_labels` gives the chunk.

    Example:
        >>> chunk_centres(3)
        tensor([ 3,  9, 15])
    """
    num_chunks = integer("num_chunks", num_chunks, minimum=0)
    chunk_len = integer("chunk_len", chunk_len, minimum=1)
    if num_chunks * chunk_len >= 2**63:
        raise ValueError(f"num_chunks * chunk_len = {num_chunks} * {chunk_len} frames overflows int64 frame indices")
    return torch.arange(num_chunks) * chunk_len + chunk_len // 2


def chunk_labels(segments, labels, num_chunks: int, chunk_len: int = 6, *, inclusive_end: bool = False) -> Tensor:
    """Per-chunk training targets from a video's annotated segments (MSB-RNN, thesis §5.4.2).

    A chunk takes the class of the segment that holds its centre frame
    (:func:`chunk_centres`: the frame its appearance and motion inputs are
    read at), else background. The thesis trains on "the entire video
    sequence, so this also includes the background class" and goes back from
    chunks to frames by replicating a chunk's label over its 6 frames;
    :func:`scalekit.sequence.clips_from_scores` is the inverse: segments that
    start and end on chunk boundaries come back from perfect scores as the
    same segments, under the same ``inclusive_end``.

    Choices where the thesis is silent: the centre frame decides (not a
    majority of the chunk's frames); a centre frame inside segments of two
    different classes is an error (the head gives one class per chunk:
    resolve the overlap in the annotations); overlapping segments of one
    class are fine.

    Args:
        segments: ``[N, 2]`` ``(start, end)`` in frames, finite, ``start <= end``
            (numpy, tensor or lists).
        labels: ``[N]`` integer classes ``>= 0`` (0-based, as the evaluation's
            ground truth).
        num_chunks: chunks in the video.
        chunk_len: frames per chunk (6 in MSB-RNN, §5.3).
        inclusive_end: ``False``: ``end`` is one past a segment's last frame;
            ``True``: ``end`` is its last frame (MPII Cooking 2 and Shopping
            annotations, and the synthetic Shopping videos).

    Returns:
        ``[num_chunks]`` int64: ``0`` for background, ``c + 1`` for class ``c``
        (the head's ``num_classes`` is the number of classes + 1).

    Example:
        >>> from scalekit.video import chunk_labels
        >>> chunk_labels([[6, 17], [30, 35]], [2, 0], num_chunks=7, inclusive_end=True)
        tensor([0, 3, 3, 0, 0, 1, 0])
    """
    num_chunks = integer("num_chunks", num_chunks, minimum=0)
    chunk_len = integer("chunk_len", chunk_len, minimum=1)
    if not isinstance(inclusive_end, (bool, np.bool_)):
        raise TypeError(f"inclusive_end must be True or False, got {inclusive_end!r}")
    seg = np.asarray(segments.detach().cpu() if isinstance(segments, Tensor) else segments, dtype=np.float64)
    lab = np.asarray(labels.detach().cpu() if isinstance(labels, Tensor) else labels)
    if seg.size == 0:
        seg = seg.reshape(0, 2)
    if seg.ndim != 2 or seg.shape[1] != 2:
        raise ValueError(f"segments must have shape [N, 2], got {list(seg.shape)}")
    if lab.ndim != 1 or lab.shape[0] != seg.shape[0]:
        raise ValueError(f"labels must have shape [N] with N = {seg.shape[0]} (one per segment), got {list(lab.shape)}")
    if lab.size and (lab.dtype.kind not in "iu"):
        raise TypeError(f"labels must be integers, got {lab.dtype}")
    if lab.size and lab.min() < 0:
        raise ValueError(f"labels must be >= 0 (0-based classes; background is added as 0), got {lab.min()}")
    bad = ~np.isfinite(seg).all(1)
    if bad.any():
        raise ValueError(f"segment {int(np.flatnonzero(bad)[0])} is not finite: {seg[bad][0].tolist()}")
    bad = seg[:, 0] > seg[:, 1]
    if bad.any():
        raise ValueError(f"segment {int(np.flatnonzero(bad)[0])} has start > end: {seg[bad][0].tolist()}")
    centres = chunk_centres(num_chunks, chunk_len).numpy()[:, None]
    inside = (centres >= seg[:, 0]) & ((centres <= seg[:, 1]) if inclusive_end else (centres < seg[:, 1]))  # [T, N]
    out = np.zeros(num_chunks, dtype=np.int64)
    if seg.shape[0]:
        first = np.where(inside.any(1), inside.argmax(1), -1)
        cls = np.where(first >= 0, lab[np.maximum(first, 0)].astype(np.int64) + 1, 0)
        clash = inside & (lab[None, :].astype(np.int64) + 1 != cls[:, None])
        if clash.any():
            i, j = np.argwhere(clash)[0]
            raise ValueError(f"chunk {i} (centre frame {int(centres[i, 0])}) lies in segment {int(first[i])} of class "
                             f"{int(lab[first[i]])} and segment {j} of class {int(lab[j])}: one class per chunk, "
                             f"resolve the overlap in the annotations")
        out = cls
    return torch.from_numpy(out)


def resample_indices(num_frames: int, source_fps: float, target_fps: float) -> Tensor:
    """Indices of the frames to keep to go from ``source_fps`` to ``target_fps``
    (nearest frame to each target time; never more frames than the source has).

    Example:
        >>> resample_indices(10, source_fps=30, target_fps=15)
        tensor([0, 2, 4, 6, 8])
    """
    num_frames = integer("num_frames", num_frames, minimum=0)
    source_fps = real("source_fps", source_fps, positive=True)
    target_fps = real("target_fps", target_fps, positive=True)
    duration = num_frames / source_fps
    scaled = duration * target_fps
    if not math.isfinite(scaled):  # a denormal source_fps: the duration overflowed
        if target_fps >= source_fps:
            return torch.arange(num_frames)
        scaled = num_frames * (target_fps / source_fps)  # <= num_frames
    count = max(1, int(scaled + 1e-9)) if num_frames > 0 else 0
    if target_fps >= source_fps and count:  # steps of at most one frame: every frame up to the last time's
        last = (torch.tensor(count - 1, dtype=torch.float64) / target_fps * source_fps).round().clamp(max=num_frames - 1)
        return torch.arange(int(last) + 1)  # without materialising `count` times (a huge target_fps)
    times = torch.arange(count, dtype=torch.float64) / target_fps
    return torch.unique((times * source_fps).round().clamp(max=num_frames - 1).to(torch.int64))


def read_video_frames(path, target_fps: float | None = None) -> Iterator[Tensor]:
    """Decode a video file lazily into ``[3, H, W]`` float frames in ``[0, 1]``.

    Needs PyAV (``pip install av``; scalekit's ``video`` extra). With ``target_fps``
    (a finite number > 0) the frames are subsampled to that rate (nearest
    frame in time); ``None`` keeps every frame. Feed the iterator to
    :func:`chunk_frames` to stream a long video chunk by chunk. Arguments are
    checked when it is called, before any decoding.

    Example:
        >>> from scalekit.video import read_video_frames
        >>> read_video_frames("clip.mp4", target_fps=0)
        Traceback (most recent call last):
        ...
        ValueError: target_fps must be a finite number > 0 (or None: every frame), got 0
    """
    if target_fps is not None:
        if isinstance(target_fps, bool) or not isinstance(target_fps, numbers.Real):
            raise TypeError(f"target_fps must be a number or None, got {type(target_fps).__name__}")
        if not math.isfinite(target_fps) or target_fps <= 0:
            raise ValueError(f"target_fps must be a finite number > 0 (or None: every frame), got {target_fps}")
    try:
        import av
    except ImportError as exc:
        raise ImportError("read_video_frames needs PyAV: pip install av (scalekit's `video` extra)") from exc
    return _decode(av, path, target_fps)


def _decode(av, path, target_fps: float | None) -> Iterator[Tensor]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate) if stream.average_rate else None
        step = 1.0 if not (target_fps and fps) else fps / target_fps
        next_keep = 0.0
        for i, frame in enumerate(container.decode(stream)):
            if i + 1e-9 < next_keep:
                continue
            next_keep += step
            yield torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1).float().div_(255)
