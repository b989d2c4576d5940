"""MSB-RNN's bi-directional LSTM over 6-frame chunks (thesis §5.3.3), with
continuation indicators, stateful truncated back-propagation through time, and
the memory-limit analysis (§5.4.3)."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, nn

__all__ = ["BiLSTMHead", "stateful_windows", "memory_limited_scores"]


class BiLSTMHead(nn.Module):
    """Per-chunk class scores from a forward and a backward LSTM.

    Each direction has its own classifier and softmax; the scores are the
    average of the two (thesis §5.3.3). ``cont`` (continuation indicators,
    Caffe's convention) marks sequence starts: where ``cont[t] == 0`` the
    forward LSTM starts step ``t`` from a zero state and the backward LSTM
    does not carry step ``t``'s state into step ``t - 1``, so several videos
    can share one batch row.

    Args:
        in_dim: input features per chunk (200 in the thesis).
        hidden: LSTM width (60 in the thesis).
        num_classes: output classes.

    Shapes: ``x`` ``[T, N, in_dim]`` (time first), ``cont`` ``[T, N]``, scores
    ``[T, N, num_classes]``; ``state`` is the forward LSTM's ``(h, c)``, each ``[N, hidden]``.
    A video of no chunks (``T = 0``) gives ``[0, N, num_classes]`` scores and
    returns ``state`` unchanged (zeros when none is given).

    Example:
        >>> import torch
        >>> from scalekit.sequence import BiLSTMHead
        >>> head = BiLSTMHead(in_dim=200, hidden=60, num_classes=5)
        >>> scores, state = head(torch.randn(12, 2, 200))
        >>> scores.shape, torch.allclose(scores.sum(-1), torch.ones(12, 2))
        (torch.Size([12, 2, 5]), True)
    """

    def __init__(self, in_dim: int = 200, hidden: int = 60, num_classes: int | None = None) -> None:
        super().__init__()
        if num_classes is None or num_classes < 1:
            raise ValueError(f"num_classes is required and must be >= 1, got {num_classes}")
        self.forward_cell = nn.LSTMCell(in_dim, hidden)
        self.backward_cell = nn.LSTMCell(in_dim, hidden)
        self.forward_cls = nn.Linear(hidden, num_classes)
        self.backward_cls = nn.Linear(hidden, num_classes)
        self.hidden = hidden

    def _run(self, cell: nn.LSTMCell, x: Tensor, state, cont: Tensor | None):
        n = x.shape[1]
        h, c = state if state is not None else (x.new_zeros(n, self.hidden), x.new_zeros(n, self.hidden))
        outs = []
        for t in range(x.shape[0]):
            if cont is not None:
                keep = cont[t].to(x.dtype)[:, None]
                h, c = h * keep, c * keep
            h, c = cell(x[t], (h, c))
            outs.append(h)
        if not outs:  # no chunks: no outputs, the state passes through unchanged
            return x.new_zeros(0, n, self.hidden), (h, c)
        return torch.stack(outs), (h, c)

    def directions(self, x: Tensor, state=None, cont: Tensor | None = None):
        """``(forward probabilities, backward probabilities, forward state)``."""
        if x.dim() != 3:
            raise ValueError(f"x must be [T, N, in_dim], got {list(x.shape)}")
        if x.shape[2] != self.forward_cell.input_size:
            raise ValueError(f"x must have in_dim = {self.forward_cell.input_size} features per chunk, "
                             f"got {list(x.shape)}")
        if cont is not None and tuple(cont.shape) != tuple(x.shape[:2]):
            raise ValueError(f"cont must be [T, N] = {list(x.shape[:2])}, got {list(cont.shape)}")
        hf, state = self._run(self.forward_cell, x, state, cont)
        back_cont = None
        if cont is not None:  # reversed: do not carry step t into t - 1 when t starts a sequence
            back_cont = torch.cat([cont[1:], torch.ones_like(cont[:1])]).flip(0)
        hb = self._run(self.backward_cell, x.flip(0), None, back_cont)[0].flip(0)
        return self.forward_cls(hf).softmax(-1), self.backward_cls(hb).softmax(-1), state

    def forward(self, x: Tensor, state=None, cont: Tensor | None = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """``(scores [T, N, C], forward state)``: the average of both directions' probabilities."""
        f, b, state = self.directions(x, state, cont)
        return (f + b) / 2, state


def stateful_windows(head: BiLSTMHead, x: Tensor, window: int, cont: Tensor | None = None) -> Iterator[dict]:
    """Walk a long sequence in windows, for truncated BPTT on full-length videos.

    The forward LSTM's state is carried from one window to the next, detached
    (gradients stay within a window); the backward LSTM sees one window. Yields
    ``{"start", "end", "scores", "forward", "backward"}`` per window, with
    gradients, so a training loop can take a step per window.

    Example:
        >>> import torch
        >>> from scalekit.sequence import BiLSTMHead, stateful_windows
        >>> head = BiLSTMHead(8, 4, 3)
        >>> [(w["start"], w["end"], tuple(w["scores"].shape)) for w in stateful_windows(head, torch.randn(10, 1, 8), 4)]
        [(0, 4, (4, 1, 3)), (4, 8, (4, 1, 3)), (8, 10, (2, 1, 3))]
    """
    if window <= 0:
        raise ValueError(f"window must be positive, got {window}")
    state = None
    for start in range(0, x.shape[0], window):
        end = min(start + window, x.shape[0])
        f, b, new_state = head.directions(x[start:end], state, None if cont is None else cont[start:end])
        yield {"start": start, "end": end, "scores": (f + b) / 2, "forward": f, "backward": b}
        state = tuple(s.detach() for s in new_state)


@torch.no_grad()
def memory_limited_scores(head: BiLSTMHead, x: Tensor, k: int) -> Tensor:
    """Forward-LSTM probabilities where every prediction sees exactly the last ``k`` chunks.

    The thesis' experiment on how much an LSTM remembers: ``k`` runs with
    continuation indicators shifted by one step each (a reset every ``k``
    steps); the prediction at ``t`` is read from the run whose last reset was
    at ``t - k + 1`` (for ``t < k - 1``, the run that starts at 0).

    Returns:
        ``[T, N, C]``; with ``k >= T`` it is the unrestricted forward run.
    """
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    t_len, n = x.shape[:2]
    if k >= t_len:
        return head.directions(x)[0]
    out = None
    steps = torch.arange(t_len)
    for phase in range(k):
        cont = torch.ones(t_len, n, dtype=x.dtype, device=x.device)
        cont[phase::k] = 0
        f = head.directions(x, cont=cont)[0]
        out = torch.empty_like(f) if out is None else out
        use = ((steps - k + 1) % k == phase) & (steps >= k - 1)
        if phase == 0:
            use |= steps < k - 1
        out[use] = f[use]
    return out
