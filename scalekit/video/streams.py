"""Multi-stream fusion of MSB-RNN (thesis §5.3): any number of per-stream
feature extractors, concatenated and projected by one fully connected layer."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from scalekit._args import integer

__all__ = ["MultiStream"]


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
            raise ValueError(f"every stream must give features for the same number of chunks, got {sizes}")
        return self.proj(torch.cat(feats, 1))
