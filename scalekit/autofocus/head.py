"""The focus branch of AutoFocus (Najibi, Singh and Davis, ICCV 2019, §4.1): a
small convolutional head that predicts FocusPixels on a detector's feature
map, and its softmax loss with ignored cells."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from scalekit._args import integer

__all__ = ["FocusHead", "focus_loss", "focus_probability"]


class FocusHead(nn.Module):
    """3x3 conv, ReLU, 1x1 conv, ReLU, 1x1 conv to 2 classes (not focus / focus), per cell.

    The released AutoFocus code puts it on the stride-16 feature map of the
    detector (conv4 with the dilated conv5 concatenated), with 256 channels in
    the two hidden layers and weights drawn from ``N(0, 0.01)``, biases zero;
    so does this module. Train it with :func:`focus_loss` against
    :func:`~scalekit.autofocus.focus_labels`; at inference
    :func:`focus_probability` is the focus map that
    :func:`~scalekit.autofocus.focus_chips` reads.

    Args:
        in_channels: channels of the feature map.
        mid_channels: channels of the two hidden layers (256).

    Shapes:
        ``[B, in_channels, H, W]`` in, ``[B, 2, H, W]`` logits out.

    Example:
        >>> import torch
        >>> head = FocusHead(64)
        >>> logits = head(torch.rand(2, 64, 32, 32))
        >>> logits.shape, focus_probability(logits).shape
        (torch.Size([2, 2, 32, 32]), torch.Size([2, 32, 32]))
    """

    def __init__(self, in_channels: int, mid_channels: int = 256) -> None:
        super().__init__()
        in_channels = integer("in_channels", in_channels, minimum=1)
        mid_channels = integer("mid_channels", mid_channels, minimum=1)
        self.conv = nn.Conv2d(in_channels, mid_channels, 3, padding=1)
        self.hidden = nn.Conv2d(mid_channels, mid_channels, 1)
        self.logits = nn.Conv2d(mid_channels, 2, 1)
        for layer in (self.conv, self.hidden, self.logits):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, features: Tensor) -> Tensor:
        if not isinstance(features, Tensor) or features.dim() != 4 or features.shape[1] != self.conv.in_channels:
            shape = list(features.shape) if isinstance(features, Tensor) else type(features).__name__
            raise ValueError(f"features must be [B, {self.conv.in_channels}, H, W], got {shape}")
        return self.logits(F.relu(self.hidden(F.relu(self.conv(features)))))


def focus_probability(logits: Tensor) -> Tensor:
    """``[B, H, W]`` probability of focus (softmax over the 2 classes, class 1) from ``[B, 2, H, W]`` logits."""
    if not isinstance(logits, Tensor) or logits.dim() != 4 or logits.shape[1] != 2:
        shape = list(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"logits must be [B, 2, H, W], got {shape}")
    return logits.softmax(1)[:, 1]


def focus_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Softmax cross-entropy over the cells not ignored, averaged over them.

    Cells labelled ``-1`` add nothing to the loss and get no gradient; the
    mean is over the labelled cells of the whole batch (MXNet's
    ``SoftmaxOutput(use_ignore=True, normalization='valid')``, as the released
    code trains the branch). A batch with every cell ignored has loss 0.

    Args:
        logits: ``[B, 2, H, W]`` float, the :class:`FocusHead`'s output.
        labels: ``[B, H, W]`` integer in ``{-1, 0, 1}`` (:func:`~scalekit.autofocus.focus_labels`).

    Returns:
        a 0-d tensor.

    Example:
        >>> import torch
        >>> logits = torch.zeros(1, 2, 1, 3)
        >>> float(focus_loss(logits, torch.tensor([[[1, 0, -1]]])))  # log 2 on the two labelled cells
        0.6931471824645996
    """
    if not isinstance(logits, Tensor) or logits.dim() != 4 or logits.shape[1] != 2 or not logits.is_floating_point():
        shape = f"{logits.dtype} {list(logits.shape)}" if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"logits must be a float [B, 2, H, W] tensor, got {shape}")
    if not isinstance(labels, Tensor) or labels.shape != (logits.shape[0], *logits.shape[2:]):
        shape = list(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(f"labels must be [B, H, W] = {[logits.shape[0], *logits.shape[2:]]} like logits, got {shape}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"labels must be an integer tensor in {{-1, 0, 1}}, got {labels.dtype}")
    labels = labels.to(device=logits.device, dtype=torch.int64)
    if bool(((labels < -1) | (labels > 1)).any()):
        raise ValueError("labels must hold -1 (ignored), 0 (negative) or 1 (focus), got "
                         f"{sorted(set(labels.unique().tolist()) - {-1, 0, 1})[:5]}")
    total = F.cross_entropy(logits, labels, ignore_index=-1, reduction="sum")
    return total / (labels >= 0).sum().clamp(min=1)
