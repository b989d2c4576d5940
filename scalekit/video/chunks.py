"""Chunking and frame-rate sampling of videos (MSB-RNN works on 6-frame chunks, thesis §5.3)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Chunk", "chunk_frames", "resample_indices", "read_video_frames"]


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
    if chunk_len <= 0:
        raise ValueError(f"chunk_len must be positive, got {chunk_len}")
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


def resample_indices(num_frames: int, source_fps: float, target_fps: float) -> Tensor:
    """Indices of the frames to keep to go from ``source_fps`` to ``target_fps``
    (nearest frame to each target time; never more frames than the source has).

    Example:
        >>> resample_indices(10, source_fps=30, target_fps=15)
        tensor([0, 2, 4, 6, 8])
    """
    if source_fps <= 0 or target_fps <= 0:
        raise ValueError("source_fps and target_fps must be positive")
    duration = num_frames / source_fps
    count = max(1, int(duration * target_fps + 1e-9)) if num_frames > 0 else 0
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
