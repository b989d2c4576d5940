"""The streams of MSB-RNN (thesis §5.3): per-chunk stream inputs (full frame and
tracked crop x appearance, pixel trajectories, stacked flow), a small CNN per
stream, and multi-stream fusion: any number of per-stream feature extractors,
concatenated and projected by one fully connected layer."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from scalekit._args import integer
from scalekit.video.chunks import chunk_centres
from scalekit.video.tracker import FlowTracker, crop_boxes
from scalekit.video.trajectories import Flow, TrajectoryConv, pixel_trajectories, stacked_flow

__all__ = ["MultiStream", "StreamCNN", "stream_inputs"]

STREAM_KINDS = ("rgb", "traj", "stack")


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


class StreamCNN(nn.Module):
    """A small per-chunk CNN for one stream: ``(features, logits)`` of a stream's input.

    The thesis fine-tunes a VGG-16 per stream (§5.4.2); this is a CPU-sized
    stand-in that keeps what the thesis specifies, the first layer per kind of
    input (§5.3.2), named as the suffixes of :func:`stream_inputs`' keys:

    * ``"rgb"``: appearance, ``[N, 3, H, W]``; a 3 x 3 convolution.
    * ``"traj"``: pixel trajectories, ``[N, 2, 2k, H, W]``; :class:`TrajectoryConv`,
      a ``1 x 2k`` kernel in time only, each point's trajectory read at its own pixel.
    * ``"stack"``: stacked flow, ``[N, 2, 2k, H, W]``; the ``4k`` flow channels
      as input channels of a 3 x 3 convolution (the two-stream network's input).

    Then (our choice, where the thesis uses VGG): batch norm and ReLU, two
    3 x 3 convolutions of stride 2 (``2 * width``, ``4 * width`` channels,
    each with batch norm and ReLU), global average pooling, a ``feat_dim``
    fully connected layer with ReLU (the "fc7" features :class:`MultiStream`
    fuses) and a linear classifier. Flow inputs are multiplied by
    ``flow_scale`` (pixels to about unit range); any floating dtype (a float16
    cache) is computed in float32.

    Args:
        kind: ``"rgb"``, ``"traj"`` or ``"stack"`` (above).
        num_classes: classifier outputs (background included when it is a class).
        k: flow neighbours each side of the centre frame (3, §5.4.2).
        width: channels of the first layer.
        feat_dim: feature width.
        flow_scale: factor applied to ``"traj"`` and ``"stack"`` inputs.

    Returns (forward):
        ``(features [N, feat_dim], logits [N, num_classes])``, float32.

    Example:
        >>> import torch
        >>> from scalekit.video import StreamCNN
        >>> net = StreamCNN("traj", num_classes=6, k=3)
        >>> features, logits = net(torch.randn(4, 2, 6, 32, 32))  # 4 chunks' pixel trajectories
        >>> features.shape, logits.shape
        (torch.Size([4, 64]), torch.Size([4, 6]))
    """

    def __init__(self, kind: str, num_classes: int, k: int = 3, width: int = 16, feat_dim: int = 64, *,
                 flow_scale: float = 0.25) -> None:
        super().__init__()
        if kind not in STREAM_KINDS:
            raise ValueError(f"kind must be one of {STREAM_KINDS}, got {kind!r}")
        num_classes = integer("num_classes", num_classes, minimum=1)
        k = integer("k", k, minimum=1)
        width = integer("width", width, minimum=1)
        feat_dim = integer("feat_dim", feat_dim, minimum=1)
        first = {"traj": lambda: TrajectoryConv(k=k, out_channels=width),
                 "stack": lambda: nn.Sequential(nn.Flatten(1, 2), nn.Conv2d(4 * k, width, 3, padding=1)),
                 "rgb": lambda: nn.Conv2d(3, width, 3, padding=1)}[kind]()
        self.kind, self.k = kind, k
        self.scale = float(flow_scale) if kind in ("traj", "stack") else 1.0
        self.features = nn.Sequential(
            first, nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.Conv2d(2 * width, 4 * width, 3, stride=2, padding=1), nn.BatchNorm2d(4 * width), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * width, feat_dim), nn.ReLU())
        self.classifier = nn.Linear(feat_dim, num_classes)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        want = [3] if self.kind == "rgb" else [2, 2 * self.k]
        if (not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() != len(want) + 3
                or list(x.shape[1 : 1 + len(want)]) != want):
            got = f"{x.dtype} {list(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
            shape = "[N, 3, H, W]" if self.kind == "rgb" else f"[N, 2, {2 * self.k}, H, W]"
            raise ValueError(f"a {self.kind!r} stream's input must be a floating-point {shape} tensor, got {got}")
        feat = self.features(x.float() * self.scale)
        return feat, self.classifier(feat)


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
