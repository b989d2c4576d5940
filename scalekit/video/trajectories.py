"""Pixel trajectories vs stacked optical flow (MSB-RNN's motion input, thesis §5.3.2)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from scalekit._args import integer

__all__ = ["pixel_trajectories", "stacked_flow", "TrajectoryConv"]

Flow = Callable[[Tensor, Tensor], Tensor]


def _frame(frames: Tensor, i: int) -> Tensor:
    return frames[min(max(i, 0), frames.shape[0] - 1)]  # replicate at the ends of the video


def _check(frames, center, k) -> tuple[int, int]:
    if not isinstance(frames, Tensor) or frames.dim() not in (3, 4):
        got = list(frames.shape) if isinstance(frames, Tensor) else type(frames).__name__
        raise ValueError(f"frames must be a [T, C, H, W] or [T, H, W] tensor, got {got}")
    k = integer("k", k, minimum=1)
    center = integer("center", center)
    if not 0 <= center < frames.shape[0]:
        raise ValueError(f"center must index a frame in [0, {frames.shape[0]}), got {center}")
    return center, k


def _flows(flow: Flow, pairs, shape) -> Tensor:
    """Stack ``flow(a, b)`` over the pairs into ``[2, len(pairs), H, W]``, checking what the estimator gives."""
    out = []
    for a, b in pairs:
        f = flow(a, b)
        if not isinstance(f, Tensor) or tuple(f.shape) != (2, *shape):
            got = list(f.shape) if isinstance(f, Tensor) else type(f).__name__
            raise ValueError(f"flow must return [2, H, W] = {[2, *shape]} per pair of frames, got {got}")
        out.append(f)
    return torch.stack(out, 1)


def pixel_trajectories(frames: Tensor, center: int, k: int = 3, flow: Flow | None = None) -> Tensor:
    """Displacements of every pixel of the centre frame to each of its ``2k`` neighbours.

    Flow is computed from frame ``t = center`` *directly* to frames ``t - k,
    ..., t - 1, t + 1, ..., t + k`` (not chained), so channel ``d`` at pixel
    ``p`` is where the point seen at ``p`` in frame ``t`` is ``d`` frames
    away: every displacement of one physical point stays at that point's
    location in frame ``t``. Frames before the start or past the end of the
    video repeat the first or last frame.

    Args:
        frames: ``[T, C, H, W]`` (or ``[T, H, W]``).
        center: index of frame ``t``.
        k: neighbours on each side (3 in the thesis: 6 flows per chunk).
        flow: ``flow(frame_a, frame_b) -> [2, H, W]`` (default :class:`~scalekit.video.TorchFlow`).

    Returns:
        ``[2, 2k, H, W]``: x displacements, then y displacements, neighbours in
        the order ``t - k, ..., t - 1, t + 1, ..., t + k``.

    Example:
        >>> import torch
        >>> from scalekit.video import pixel_trajectories
        >>> frames = torch.zeros(7, 1, 8, 8)
        >>> moving = lambda a, b: torch.ones(2, 8, 8)  # a stand-in flow: everything moves by (1, 1)
        >>> pixel_trajectories(frames, center=3, k=3, flow=moving).shape
        torch.Size([2, 6, 8, 8])
    """
    from scalekit.video.flow import TorchFlow

    center, k = _check(frames, center, k)
    flow = flow if flow is not None else TorchFlow()
    offsets = [d for d in range(-k, k + 1) if d != 0]
    return _flows(flow, [(frames[center], _frame(frames, center + d)) for d in offsets], frames.shape[-2:])


def stacked_flow(frames: Tensor, center: int, k: int = 3, flow: Flow | None = None) -> Tensor:
    """The classic two-stream input: flows between consecutive frames around ``center``.

    Channel ``j`` is the flow from frame ``t - k + j`` to ``t - k + j + 1``,
    each at its *own* frame's pixel grid: a moving point's displacements end
    up at different pixels, unlike :func:`pixel_trajectories`.

    Returns:
        ``[2, 2k, H, W]``: x flows, then y flows, for ``j = 0 .. 2k - 1``.

    Example:
        >>> import torch
        >>> from scalekit.video import stacked_flow
        >>> frames = torch.zeros(7, 1, 8, 8)
        >>> still = lambda a, b: torch.zeros(2, 8, 8)  # a stand-in flow: nothing moves
        >>> stacked_flow(frames, center=3, k=3, flow=still).shape
        torch.Size([2, 6, 8, 8])
    """
    from scalekit.video.flow import TorchFlow

    center, k = _check(frames, center, k)
    flow = flow if flow is not None else TorchFlow()
    return _flows(flow, [(_frame(frames, center - k + j), _frame(frames, center - k + j + 1)) for j in range(2 * k)],
                  frames.shape[-2:])


class TrajectoryConv(nn.Module):
    """First layer for pixel trajectories: convolves only in time, a ``1 x time_kernel``
    kernel per pixel over each pixel's ``2k`` displacements (x and y stacks as 2
    input channels); no spatial extent, so a point's trajectory is read at its
    own location (thesis §5.3.2).

    Input ``[N, 2, 2k, H, W]`` (a batch of :func:`pixel_trajectories`), output
    ``[N, out_channels * (2k - time_kernel + 1), H, W]``.

    Example:
        >>> import torch
        >>> from scalekit.video import TrajectoryConv
        >>> TrajectoryConv(k=3, out_channels=16)(torch.randn(2, 2, 6, 32, 32)).shape
        torch.Size([2, 16, 32, 32])
    """

    def __init__(self, k: int = 3, out_channels: int = 64, time_kernel: int | None = None) -> None:
        super().__init__()
        self.frames = 2 * integer("k", k, minimum=1)
        out_channels = integer("out_channels", out_channels, minimum=1)
        time_kernel = self.frames if time_kernel is None else integer("time_kernel", time_kernel)
        if not 1 <= time_kernel <= self.frames:
            raise ValueError(f"time_kernel must lie in [1, 2k] = [1, {self.frames}], got {time_kernel}")
        self.conv = nn.Conv3d(2, out_channels, kernel_size=(time_kernel, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 5 or x.shape[1] != 2 or x.shape[2] != self.frames:
            raise ValueError(f"input must be [N, 2, {self.frames}, H, W], got {list(x.shape)}")
        return self.conv(x).flatten(1, 2)
