"""The streams of MSB-RNN (thesis §5.3): per-chunk stream inputs (full frame and
tracked crop x appearance, pixel trajectories, stacked flow), and multi-stream
fusion: any number of per-stream feature extractors, concatenated and projected
by one fully connected layer."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from scalekit._args import integer
from scalekit.video.chunks import chunk_centres
from scalekit.video.tracker import FlowTracker, crop_boxes
from scalekit.video.trajectories import Flow, pixel_trajectories, stacked_flow

__all__ = ["MultiStream", "stream_inputs"]


def stream_inputs(frames: Tensor, tracker: FlowTracker, *, chunk_len: int = 6, k: int = 3, flow: Flow | None = None,
                  crop_size: tuple[int, int] | None = None) -> dict[str, Tensor]:
    """Every stream's input for each chunk of a video (thesis §5.3, §5.4.2).

    Per chunk, at its centre frame (:func:`~scalekit.video.chunk_centres`):
    the frame itself (appearance), its :func:`pixel_trajectories` and
    :func:`stacked_flow` over ``k`` frames each side; the tracker's box,
    moved once per chunk (§5.3.1) on the chunk's motion — the stacked flows'
    magnitude averaged over the ``2k`` flows, what moved during the chunk —
    and the same three inputs cropped to that box (person-centric). A last
    chunk shorter than ``chunk_len`` is dropped.

    Args:
        frames: ``[T, C, H, W]`` float frames.
        tracker: the :class:`FlowTracker` (its box must fit the frames).
        chunk_len: frames per chunk (6, §5.3).
        k: flow neighbours each side of the centre frame (3, §5.4.2).
        flow: the flow estimator (default :class:`~scalekit.video.TorchFlow`).
        crop_size: ``(h, w)`` the crops are resized to (default: the box size).

    Returns:
        With ``N = T // chunk_len``: ``"frame_rgb"`` ``[N, C, H, W]``,
        ``"frame_traj"`` and ``"frame_stack"`` ``[N, 2, 2k, H, W]``, the same
        three as ``"crop_*"`` at ``crop_size``, and ``"boxes"`` ``[N, 4]``
        float32 ``(x1, y1, x2, y2)``.

    Example:
        >>> import torch
        >>> from scalekit.video import FlowTracker, stream_inputs
        >>> still = lambda a, b: torch.zeros(2, 16, 16)  # a stand-in flow: nothing moves
        >>> out = stream_inputs(torch.rand(14, 3, 16, 16), FlowTracker((8, 8), threshold=1.0), flow=still)
        >>> out["crop_traj"].shape, out["boxes"].tolist()  # 2 chunks; the box stays centred
        (torch.Size([2, 2, 6, 8, 8]), [[4.0, 4.0, 12.0, 12.0], [4.0, 4.0, 12.0, 12.0]])
    """
    if not isinstance(frames, Tensor) or frames.dim() != 4:
        got = list(frames.shape) if isinstance(frames, Tensor) else type(frames).__name__
        raise ValueError(f"frames must be a [T, C, H, W] tensor, got {got}")
    if not isinstance(tracker, FlowTracker):
        raise TypeError(f"tracker must be a FlowTracker, got {type(tracker).__name__}")
    chunk_len = integer("chunk_len", chunk_len, minimum=1)
    if crop_size is not None:
        if not hasattr(crop_size, "__len__") or len(crop_size) != 2:
            raise ValueError(f"crop_size must be (h, w), got {crop_size!r}")
        crop_size = (integer("crop_size[0]", crop_size[0], minimum=1), integer("crop_size[1]", crop_size[1], minimum=1))
    centres = chunk_centres(frames.shape[0] // chunk_len, chunk_len).tolist()
    h, w = frames.shape[-2:]
    empty = torch.zeros((0, 2, 2 * integer("k", k, minimum=1), h, w), device=frames.device)  # flow is float32
    traj = torch.stack([pixel_trajectories(frames, c, k=k, flow=flow) for c in centres]) if centres else empty
    stack = torch.stack([stacked_flow(frames, c, k=k, flow=flow) for c in centres]) if centres else empty
    boxes = tracker.track(stack.norm(dim=1).mean(1))  # [N, H, W]: what moved during each chunk
    rgb = frames[centres]

    def crop(x: Tensor) -> Tensor:
        out = crop_boxes(x.flatten(1, 2) if x.dim() == 5 else x, boxes, size=crop_size)
        return out.reshape(len(centres), *x.shape[1:-2], *out.shape[-2:])

    return {"frame_rgb": rgb, "frame_traj": traj, "frame_stack": stack, "crop_rgb": crop(rgb),
            "crop_traj": crop(traj), "crop_stack": crop(stack), "boxes": boxes}


class MultiStream(nn.Module):
    """Runs one feature extractor per stream and projects their concatenation.

    MSB-RNN has four streams: full frame x cropped (tracked person), each as
    appearance (RGB) and motion (pixel trajectories); any names and number work.

    Args:
        streams: ``{name: module}``; ``module(input)`` gives ``[N, D_name]`` (or
            ``[N, ...]``, flattened).
        proj_dim: output width (200 in the thesis, the LSTM's input).
        feature_dims: ``{name: D_name}`` if known; otherwise the projection is
            built lazily on the first call.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from scalekit.video import MultiStream
        >>> streams = {"frame_rgb": nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 32)),
        ...            "crop_motion": nn.Sequential(nn.Flatten(), nn.Linear(12 * 8 * 8, 16))}
        >>> fuse = MultiStream(streams, proj_dim=200, feature_dims={"frame_rgb": 32, "crop_motion": 16})
        >>> fuse({"frame_rgb": torch.randn(4, 3, 8, 8), "crop_motion": torch.randn(4, 12, 8, 8)}).shape
        torch.Size([4, 200])
    """

    def __init__(self, streams: dict[str, nn.Module], proj_dim: int = 200,
                 feature_dims: dict[str, int] | None = None) -> None:
        super().__init__()
        if not isinstance(streams, dict) or not streams:
            raise ValueError(f"streams must be a non-empty {{name: module}} dict, got {streams!r}")
        for name, module in streams.items():
            if not isinstance(module, nn.Module):
                raise TypeError(f"streams[{name!r}] must be an nn.Module, got {type(module).__name__}")
        proj_dim = integer("proj_dim", proj_dim, minimum=1)
        self.names = list(streams)
        self.streams = nn.ModuleDict(streams)
        if feature_dims is not None:
            missing = set(self.names) - set(feature_dims)
            if missing:
                raise ValueError(f"feature_dims lacks streams {sorted(missing)}")
            feature_dims = {n: integer(f"feature_dims[{n!r}]", feature_dims[n], minimum=1) for n in self.names}
            self.proj = nn.Linear(sum(feature_dims[n] for n in self.names), proj_dim)
        else:
            self.proj = nn.LazyLinear(proj_dim)

    def forward(self, inputs: dict[str, Tensor]) -> Tensor:
        missing = set(self.names) - set(inputs)
        if missing:
            raise ValueError(f"inputs lacks streams {sorted(missing)}")
        feats = [self.streams[n](inputs[n]).flatten(1) for n in self.names]
        sizes = {n: f.shape[0] for n, f in zip(self.names, feats)}
        if len(set(sizes.values())) > 1:
            raise ValueError(f"inputs: every stream must give features for the same number of chunks, got {sizes}")
        return self.proj(torch.cat(feats, 1))
