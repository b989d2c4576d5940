"""MSB-RNN's bi-directional LSTM over 6-frame chunks (thesis §5.3.3), its loss
(§5.4.2), continuation indicators, stateful truncated back-propagation through
time and a whole video's loss under it, and the memory-limit analysis (§5.4.3)."""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from scalekit._args import integer

__all__ = ["BiLSTMHead", "continuation_indicators", "stateful_windows", "truncated_bptt_loss", "memory_limited_scores"]

LOSS_MODES = ("per_direction", "joint")
DIRECTIONS = ("both", "forward", "backward")


class BiLSTMHead(nn.Module):
    """Per-chunk class scores from a forward and a backward LSTM.

    Each direction has its own classifier and softmax; the scores are the
    average of the two (thesis §5.3.3). ``cont`` (continuation indicators,
    Caffe's convention) marks sequence starts: where ``cont[t] == 0`` the
    forward LSTM starts step ``t`` from a zero state and the backward LSTM
    does not carry step ``t``'s state into step ``t - 1``, so several videos
    can share one batch row.

    ``direction="forward"`` or ``"backward"`` builds a uni-directional LSTM
    (one cell and one classifier; Table 5.4's uni-directional rows, trained
    as their own models): :meth:`directions` returns ``None`` for the absent
    direction, the scores are the present direction's probabilities and
    :meth:`loss` has only its term.

    Args:
        in_dim: input features per chunk (200 in the thesis).
        hidden: LSTM width (60 in the thesis).
        num_classes: output classes.
        direction: ``"both"`` (default, MSB-RNN), ``"forward"`` or ``"backward"``.

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
        >>> forward_only = BiLSTMHead(in_dim=200, hidden=60, num_classes=5, direction="forward")
        >>> f, b, _ = forward_only.directions(torch.randn(12, 2, 200))
        >>> f.shape, b is None
        (torch.Size([12, 2, 5]), True)
    """

    def __init__(self, in_dim: int = 200, hidden: int = 60, num_classes: int | None = None, *,
                 direction: str = "both") -> None:
        super().__init__()
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        if num_classes is None:
            raise ValueError("num_classes is required and must be >= 1, got None")
        num_classes = integer("num_classes", num_classes, minimum=1)
        in_dim = integer("in_dim", in_dim, minimum=1)
        hidden = integer("hidden", hidden, minimum=1)
        self.direction, self.in_dim, self.num_classes, self.hidden = direction, in_dim, num_classes, hidden
        if direction != "backward":
            self.forward_cell = nn.LSTMCell(in_dim, hidden)
            self.forward_cls = nn.Linear(hidden, num_classes)
        if direction != "forward":
            self.backward_cell = nn.LSTMCell(in_dim, hidden)
            self.backward_cls = nn.Linear(hidden, num_classes)

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
        """``(forward probabilities, backward probabilities, forward state)``; ``None`` for a
        direction the head lacks (a backward-only head returns ``state`` as given)."""
        if x.dim() != 3:
            raise ValueError(f"x must be [T, N, in_dim], got {list(x.shape)}")
        if x.shape[2] != self.in_dim:
            raise ValueError(f"x must have in_dim = {self.in_dim} features per chunk, "
                             f"got {list(x.shape)}")
        if cont is not None:
            if not isinstance(cont, Tensor) or tuple(cont.shape) != tuple(x.shape[:2]):
                got = list(cont.shape) if isinstance(cont, Tensor) else type(cont).__name__
                raise ValueError(f"cont must be a [T, N] = {list(x.shape[:2])} tensor, got {got}")
            if not ((cont == 0) | (cont == 1)).all():
                raise ValueError("cont must hold only 0 (a sequence starts here) and 1 (it continues), got "
                                 f"{cont[(cont != 0) & (cont != 1)][0].item()}")
        if state is not None:
            want = (x.shape[1], self.hidden)
            if (not isinstance(state, (tuple, list)) or len(state) != 2
                    or any(not isinstance(s, Tensor) or tuple(s.shape) != want for s in state)):
                got = [list(s.shape) if isinstance(s, Tensor) else type(s).__name__ for s in state] \
                    if isinstance(state, (tuple, list)) else type(state).__name__
                raise ValueError(f"state must be the forward LSTM's (h, c), each [N, hidden] = {list(want)}, got {got}")
        f = b = None
        if self.direction != "backward":
            hf, state = self._run(self.forward_cell, x, state, cont)
            f = self.forward_cls(hf).softmax(-1)
        if self.direction != "forward":
            back_cont = None
            if cont is not None:  # reversed: do not carry step t into t - 1 when t starts a sequence
                back_cont = torch.cat([cont[1:], torch.ones_like(cont[:1])]).flip(0)
            hb = self._run(self.backward_cell, x.flip(0), None, back_cont)[0].flip(0)
            b = self.backward_cls(hb).softmax(-1)
        return f, b, state

    def forward(self, x: Tensor, state=None, cont: Tensor | None = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """``(scores [T, N, C], forward state)``: the average of both directions' probabilities
        (the one direction's, for a uni-directional head)."""
        f, b, state = self.directions(x, state, cont)
        return _average(f, b), state

    def loss(self, outputs: dict, targets: Tensor, *, mode: str = "per_direction", reduction: str = "mean",
             ignore_index: int = -100) -> dict:
        """Per-chunk classification losses of the two directions (thesis §5.4.2).

        ``mode="per_direction"`` (default, the thesis): "a softmax classifier
        is trained on each LSTM's hidden layer" — the negative log-likelihood
        of each direction's own probabilities, ``{"loss_forward",
        "loss_backward"}``; only at test time are the two averaged.
        ``mode="joint"``: one loss on the averaged probabilities that the
        head outputs, ``{"loss_joint"}``. Sum the dict's values to train, as
        with the detection heads' losses. Detection training uses whole
        videos, so the targets include the background class (§5.4.2).

        The log of a probability is taken after clamping it at the dtype's
        smallest normal number (a softmax that underflowed to 0 gives a
        large finite loss, not ``inf``).

        Args:
            outputs: ``{"forward", "backward"}`` probabilities, each ``[T, N, C]``:
                a window of :func:`stateful_windows`, or
                ``dict(zip(("forward", "backward"), head.directions(x)[:2]))``.
            targets: ``[T, N]`` int64 classes in ``[0, C)`` (for example
                :func:`scalekit.video.chunk_labels`, background 0), or
                ``ignore_index`` for chunks that take part in no loss.
            mode: ``"per_direction"`` or ``"joint"`` (above).
            reduction: ``"mean"`` over the chunks that are not ignored (0 when
                none is) or ``"sum"`` (to normalise a truncated-BPTT video by
                its whole length yourself).
            ignore_index: the target value of chunks left out (as
                :func:`torch.nn.functional.nll_loss`).

        Returns:
            ``{"loss_forward", "loss_backward"}`` or ``{"loss_joint"}``: 0-d tensors.

        Example:
            >>> import torch
            >>> from scalekit.sequence import BiLSTMHead
            >>> head = BiLSTMHead(in_dim=8, hidden=4, num_classes=3)
            >>> f, b, _ = head.directions(torch.randn(5, 1, 8))
            >>> losses = head.loss({"forward": f, "backward": b}, torch.tensor([[0], [0], [2], [2], [0]]))
            >>> sorted(losses), bool(losses["loss_forward"] > 0)
            (['loss_backward', 'loss_forward'], True)
        """
        if mode not in LOSS_MODES:
            raise ValueError(f"mode must be one of {LOSS_MODES}, got {mode!r}")
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
        names = ("forward", "backward") if self.direction == "both" else (self.direction,)
        if not isinstance(outputs, dict) or not set(names) <= set(outputs):
            got = sorted(outputs) if isinstance(outputs, dict) else type(outputs).__name__
            want = " and ".join(f"'{n}'" for n in names)
            raise ValueError(f"outputs must be a dict with {want} probabilities, got {got}")
        probs = [outputs[n] for n in names]
        what = "outputs['forward'] and ['backward']" if len(names) == 2 else f"outputs[{names[0]!r}]"
        if not all(isinstance(p, Tensor) and p.is_floating_point() for p in probs):
            raise TypeError(f"{what} must be floating-point tensors, got "
                            f"{[p.dtype if isinstance(p, Tensor) else type(p).__name__ for p in probs]}")
        f, num_classes = probs[0], self.num_classes
        if f.dim() != 3 or any(p.shape != f.shape for p in probs) or f.shape[2] != num_classes:
            raise ValueError(f"{what} must {'both ' if len(names) == 2 else ''}be [T, N, {num_classes}], "
                             f"got {' and '.join(str(list(p.shape)) for p in probs)}")
        if not isinstance(targets, Tensor) or targets.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise TypeError(f"targets must be an integer tensor, got "
                            f"{targets.dtype if isinstance(targets, Tensor) else type(targets).__name__}")
        if tuple(targets.shape) != tuple(f.shape[:2]):
            raise ValueError(f"targets must be [T, N] = {list(f.shape[:2])}, got {list(targets.shape)}")
        ignore_index = integer("ignore_index", ignore_index)
        if not -(2**63) <= ignore_index < 2**63:
            raise ValueError(f"ignore_index must fit in int64, got {ignore_index}")
        targets = targets.to(torch.int64)
        keep = targets != ignore_index
        bad = keep & ((targets < 0) | (targets >= num_classes))
        if bad.any():
            raise ValueError(f"targets must lie in [0, {num_classes}) or be ignore_index = {ignore_index}, "
                             f"got {targets[bad][0].item()}")

        def nll(probs: Tensor) -> Tensor:
            log_p = probs.clamp_min(torch.finfo(probs.dtype).tiny).log()
            total = F.nll_loss(log_p.flatten(0, 1), targets.flatten(), ignore_index=ignore_index, reduction="sum")
            return total if reduction == "sum" else total / keep.sum().clamp(min=1)

        if mode == "joint":
            return {"loss_joint": nll(sum(probs) / len(probs))}
        return {f"loss_{n}": nll(p) for n, p in zip(names, probs)}


def _average(f: Tensor | None, b: Tensor | None) -> Tensor:
    """The scores: both directions' probabilities averaged, or the one present."""
    return b if f is None else f if b is None else (f + b) / 2


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
    window = integer("window", window, minimum=1)
    if not isinstance(x, Tensor) or x.dim() != 3:
        raise ValueError(f"x must be a [T, N, in_dim] tensor, got {list(x.shape) if isinstance(x, Tensor) else type(x)}")
    return _windows(head, x, window, cont)


def _windows(head: BiLSTMHead, x: Tensor, window: int, cont: Tensor | None) -> Iterator[dict]:
    state = None
    for start in range(0, x.shape[0], window):
        end = min(start + window, x.shape[0])
        f, b, new_state = head.directions(x[start:end], state, None if cont is None else cont[start:end])
        yield {"start": start, "end": end, "scores": _average(f, b), "forward": f, "backward": b}
        state = None if new_state is None else tuple(s.detach() for s in new_state)


def truncated_bptt_loss(head: BiLSTMHead, x: Tensor, targets: Tensor, window: int, *, cont: Tensor | None = None,
                        mode: str = "per_direction", ignore_index: int = -100) -> Tensor:
    """The training loss of one whole video under stateful truncated BPTT (thesis §5.4.2).

    The thesis trains on full-length videos. The video is walked in windows
    of ``window`` chunks with :func:`stateful_windows` (the forward LSTM's
    state carried from window to window, detached, so gradients stay within
    a window; the backward LSTM sees one window); each window's
    :meth:`BiLSTMHead.loss` with ``reduction="sum"`` is added up (both
    directions with ``mode="per_direction"``), and the total is divided by
    the number of chunks that take part (targets other than ``ignore_index``;
    at least 1). One backward pass and one optimizer step per video.

    Args:
        head: the :class:`BiLSTMHead`.
        x: ``[T, N, in_dim]`` per-chunk features (time first).
        targets: ``[T, N]`` integer classes in ``[0, C)`` (for example
            :func:`scalekit.video.chunk_labels`, background 0) or ``ignore_index``.
        window: chunks per window (at least 1; ``>= T``: one window, plain BPTT).
        cont: ``[T, N]`` continuation indicators (:func:`continuation_indicators`)
            or ``None``: one sequence per row.
        mode: ``"per_direction"`` (the thesis) or ``"joint"``, as :meth:`BiLSTMHead.loss`.
        ignore_index: the target of chunks left out of the loss and of the count.

    Returns:
        A 0-d tensor with gradients (float zero for ``T = 0``).

    Example:
        >>> import torch
        >>> from scalekit.sequence import BiLSTMHead, truncated_bptt_loss
        >>> head = BiLSTMHead(in_dim=8, hidden=4, num_classes=3)
        >>> x, y = torch.randn(10, 1, 8), torch.tensor([0, 0, 1, 1, 1, 0, 2, 2, 0, 0])[:, None]
        >>> loss = truncated_bptt_loss(head, x, y, window=4)  # windows [0, 4), [4, 8), [8, 10)
        >>> loss.backward()
        >>> loss.dim(), head.forward_cell.weight_ih.grad is not None
        (0, True)
    """
    if not isinstance(x, Tensor) or x.dim() != 3:
        raise ValueError(f"x must be a [T, N, in_dim] tensor, got {list(x.shape) if isinstance(x, Tensor) else type(x)}")
    if not isinstance(targets, Tensor) or tuple(targets.shape) != tuple(x.shape[:2]):
        got = list(targets.shape) if isinstance(targets, Tensor) else type(targets).__name__
        raise ValueError(f"targets must be a [T, N] = {list(x.shape[:2])} tensor, got {got}")
    ignore_index = integer("ignore_index", ignore_index)
    loss = 0.0
    for w in stateful_windows(head, x, window, cont):
        for value in head.loss(w, targets[w["start"] : w["end"]], mode=mode, reduction="sum",
                               ignore_index=ignore_index).values():
            loss = loss + value
    if not isinstance(loss, Tensor):  # no chunks: no windows
        return x.new_zeros(())
    return loss / max(int((targets != ignore_index).sum()), 1)


@torch.no_grad()
def memory_limited_scores(head: BiLSTMHead, x: Tensor, k: int) -> Tensor:
    """Forward-LSTM probabilities where every prediction sees exactly the last ``k`` chunks.

    The thesis' experiment on how much an LSTM remembers: ``k`` runs with
    continuation indicators shifted by one step each (a reset every ``k``
    steps); the prediction at ``t`` is read from the run whose last reset was
    at ``t - k + 1`` (for ``t < k - 1``, the run that starts at 0).

    Returns:
        ``[T, N, C]``; with ``k >= T`` it is the unrestricted forward run.

    Raises:
        ValueError: ``head`` has no forward LSTM (``direction="backward"``).
    """
    k = integer("k", k, minimum=1)
    if getattr(head, "direction", "both") == "backward":
        raise ValueError("memory_limited_scores needs a head with a forward LSTM, got direction='backward'")
    if not isinstance(x, Tensor) or x.dim() != 3:
        raise ValueError(f"x must be a [T, N, in_dim] tensor, got {list(x.shape) if isinstance(x, Tensor) else type(x)}")
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


def continuation_indicators(labels) -> Tensor:
    """Continuation indicators that cut a video at every action boundary (thesis §5.4.3).

    Caffe's convention, as :class:`BiLSTMHead` reads it: ``0`` where a
    sequence starts, ``1`` where it continues. Here a sequence starts at the
    first chunk and wherever the label changes (an action starts or ends):
    training with these simulates training on trimmed clips, the thesis'
    "learning transitions between actions" experiment (training only; at
    test time, and for the thesis' own training on untrimmed videos, pass
    ``cont=None``: one sequence per video).

    Args:
        labels: ``[T]`` or ``[T, N]`` (time first) per-chunk labels, a tensor,
            numpy array or list of integers (for example from
            :func:`scalekit.video.chunk_labels`).

    Returns:
        float32 tensor of ``labels``' shape (``T = 0`` gives an empty one).

    Example:
        >>> import torch
        >>> from scalekit.sequence import continuation_indicators
        >>> continuation_indicators(torch.tensor([0, 0, 3, 3, 3, 0]))
        tensor([0., 1., 0., 1., 1., 0.])
    """
    labels = torch.as_tensor(labels)
    if labels.dim() not in (1, 2):
        raise ValueError(f"labels must be [T] or [T, N], got {list(labels.shape)}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"labels must be integers, got {labels.dtype}")
    cont = torch.ones(labels.shape, dtype=torch.float32, device=labels.device)
    if labels.shape[0]:
        cont[0] = 0
        cont[1:][labels[1:] != labels[:-1]] = 0
    return cont
