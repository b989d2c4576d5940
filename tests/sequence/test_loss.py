"""BiLSTMHead.loss (thesis §5.4.2) and continuation indicators (§5.4.3)."""

import pytest
import torch
import torch.nn.functional as F

from scalekit.sequence import BiLSTMHead, continuation_indicators, stateful_windows


@pytest.fixture
def head():
    torch.manual_seed(0)
    return BiLSTMHead(in_dim=6, hidden=5, num_classes=4)


def outputs(head, x):
    f, b, _ = head.directions(x)
    return {"forward": f, "backward": b}


def reference_nll(probs, targets, keep):
    """-log p[target], averaged over the kept chunks, in float64 from the probabilities."""
    p = probs.double().gather(2, targets.clamp(min=0)[..., None])[..., 0]
    return -(p.log() * keep).sum() / keep.sum()


def test_per_direction_is_each_directions_own_nll(head):
    x, y = torch.randn(9, 2, 6), torch.randint(0, 4, (9, 2))
    out = outputs(head, x)
    losses = head.loss(out, y)
    assert sorted(losses) == ["loss_backward", "loss_forward"]
    keep = torch.ones(9, 2)
    torch.testing.assert_close(losses["loss_forward"].double(), reference_nll(out["forward"], y, keep))
    torch.testing.assert_close(losses["loss_backward"].double(), reference_nll(out["backward"], y, keep))
    summed = head.loss(out, y, reduction="sum")
    torch.testing.assert_close(summed["loss_forward"], losses["loss_forward"] * 18)


def test_joint_is_the_nll_of_the_averaged_scores(head):
    x, y = torch.randn(9, 2, 6), torch.randint(0, 4, (9, 2))
    out = outputs(head, x)
    joint = head.loss(out, y, mode="joint")
    scores, _ = head(x)
    torch.testing.assert_close(joint["loss_joint"].double(), reference_nll(scores, y, torch.ones(9, 2)))


def test_each_direction_trains_only_its_own_classifier(head):
    """Per direction (the thesis): the forward loss reaches no backward weight and vice versa;
    the joint loss reaches both."""
    x, y = torch.randn(7, 1, 6), torch.randint(0, 4, (7, 1))
    for key, own, other in (("loss_forward", head.forward_cls, head.backward_cls),
                            ("loss_backward", head.backward_cls, head.forward_cls)):
        head.zero_grad()
        head.loss(outputs(head, x), y)[key].backward()
        assert own.weight.grad.abs().sum() > 0
        assert other.weight.grad is None or other.weight.grad.abs().sum() == 0
    head.zero_grad()
    head.loss(outputs(head, x), y, mode="joint")["loss_joint"].backward()
    assert head.forward_cls.weight.grad.abs().sum() > 0 and head.backward_cls.weight.grad.abs().sum() > 0


def test_ignored_chunks_take_part_in_no_loss(head):
    x, y = torch.randn(6, 1, 6), torch.randint(0, 4, (6, 1))
    y[2:4] = -100
    out = outputs(head, x)
    keep = (y != -100).double()
    loss = head.loss(out, y)["loss_forward"]
    torch.testing.assert_close(loss.double(), reference_nll(out["forward"], y, keep))
    none = head.loss(out, torch.full((6, 1), -1), ignore_index=-1)
    assert none["loss_forward"].item() == 0.0 and none["loss_forward"].requires_grad


def test_window_losses_add_up_to_the_whole_video(head):
    """What truncated BPTT trains on: per-window sums over a video equal the whole video's sum
    (the forward state is carried, the backward LSTM sees one window)."""
    x, y = torch.randn(11, 1, 6), torch.randint(0, 4, (11, 1))
    windows = list(stateful_windows(head, x, window=4))
    fwd = sum(head.loss(w, y[w["start"] : w["end"]], reduction="sum")["loss_forward"] for w in windows)
    torch.testing.assert_close(fwd, head.loss(outputs(head, x), y, reduction="sum")["loss_forward"])


def test_a_saturated_wrong_prediction_gives_a_finite_loss(head):
    probs = torch.tensor([[[1.0, 0.0, 0.0, 0.0]]])
    loss = head.loss({"forward": probs, "backward": probs}, torch.tensor([[2]]))["loss_forward"]
    assert torch.isfinite(loss) and loss.item() > 80  # -log(float32 tiny) = 87.3


@pytest.mark.parametrize("call, error, match", [
    (lambda h, o, y: h.loss(o, y, mode="both"), ValueError, "mode must be one of"),
    (lambda h, o, y: h.loss(o, y, reduction="none"), ValueError, "reduction must be 'mean' or 'sum'"),
    (lambda h, o, y: h.loss({"forward": o["forward"]}, y), ValueError, "outputs must be a dict with 'forward' and"),
    (lambda h, o, y: h.loss(o, y[:, 0]), ValueError, r"targets must be \[T, N\] = \[5, 1\], got \[5\]"),
    (lambda h, o, y: h.loss({"forward": [0.5], "backward": o["backward"]}, y), TypeError,
     r"outputs\['forward'\] and \['backward'\] must be floating-point tensors"),
    (lambda h, o, y: h.loss(o, y, ignore_index=2**64), ValueError, "ignore_index must fit in int64"),
    (lambda h, o, y: h.loss(o, y.float()), TypeError, "targets must be an integer tensor, got torch.float32"),
    (lambda h, o, y: h.loss(o, y + 4), ValueError, r"targets must lie in \[0, 4\) or be ignore_index = -100, got"),
    (lambda h, o, y: h.loss({"forward": o["forward"][..., :3], "backward": o["backward"][..., :3]}, y),
     ValueError, r"must both be \[T, N, 4\]"),
])
def test_bad_arguments_are_named(head, call, error, match):
    out = outputs(head, torch.randn(5, 1, 6))
    with pytest.raises(error, match=match):
        call(head, out, torch.zeros(5, 1, dtype=torch.int64))


class TestContinuationIndicators:
    def test_zero_at_the_start_and_at_every_action_boundary(self):
        labels = torch.tensor([0, 0, 2, 2, 2, 0, 1, 1])
        assert continuation_indicators(labels).tolist() == [0, 1, 0, 1, 1, 0, 0, 1]
        per_row = continuation_indicators(torch.tensor([[0, 1], [0, 1], [3, 1]]))
        assert per_row.tolist() == [[0, 0], [1, 1], [0, 1]]
        assert continuation_indicators([5, 5]).dtype == torch.float32
        assert continuation_indicators(torch.zeros(0, dtype=torch.int64)).shape == (0,)

    def test_the_head_resets_exactly_at_the_boundaries(self, head):
        """Trimmed training (§5.4.3): with these indicators, each action's chunks are scored as if
        the action were a video of its own."""
        x, labels = torch.randn(8, 1, 6), torch.tensor([0, 0, 2, 2, 2, 1, 1, 1])
        f, b, _ = head.directions(x, cont=continuation_indicators(labels)[:, None])
        for a, e in ((0, 2), (2, 5), (5, 8)):
            fa, ba, _ = head.directions(x[a:e])
            torch.testing.assert_close(f[a:e], fa)
            torch.testing.assert_close(b[a:e], ba)

    def test_bad_labels(self):
        with pytest.raises(TypeError, match="labels must be integers, got torch.float32"):
            continuation_indicators(torch.zeros(3))
        with pytest.raises(ValueError, match=r"labels must be \[T\] or \[T, N\], got \[2, 2, 2\]"):
            continuation_indicators(torch.zeros(2, 2, 2, dtype=torch.int64))


def test_head_arguments_checked_at_construction():
    for kwargs, error, match in (({"in_dim": 0, "num_classes": 3}, ValueError, "in_dim must be >= 1"),
                                 ({"hidden": 2.5, "num_classes": 3}, TypeError, "hidden must be an integer"),
                                 ({"num_classes": 0}, ValueError, "num_classes must be >= 1")):
        with pytest.raises(error, match=match):
            BiLSTMHead(**kwargs)
    import numpy as np

    assert BiLSTMHead(np.int64(4), np.int32(3), np.int64(2))(torch.randn(2, 1, 4))[0].shape == (2, 1, 2)


def test_cont_and_state_are_checked(head):
    x = torch.randn(3, 1, 6)
    with pytest.raises(ValueError, match="cont must hold only 0"):
        head(x, cont=torch.full((3, 1), 0.5))
    with pytest.raises(ValueError, match=r"state must be the forward LSTM's \(h, c\), each \[N, hidden\] = \[1, 5\]"):
        head(x, state=(torch.zeros(2, 5), torch.zeros(2, 5)))
    with pytest.raises(TypeError, match="window must be an integer"):
        stateful_windows(head, x, window=2.0)  # checked when called, not at the first window


def test_nll_matches_cross_entropy_on_the_logits(head):
    """The probabilities' NLL is the cross-entropy of the direction's logits (to float32 precision)."""
    x, y = torch.randn(5, 1, 6), torch.randint(0, 4, (5, 1))
    hf, _ = head._run(head.forward_cell, x, None, None)
    ce = F.cross_entropy(head.forward_cls(hf).flatten(0, 1), y.flatten())
    torch.testing.assert_close(head.loss(outputs(head, x), y)["loss_forward"], ce)


class TestTruncatedBPTTLoss:
    """A whole video's loss under stateful truncated BPTT (thesis §5.4.2)."""

    @staticmethod
    def reference(head, x, y, window, ignore_index=-100):
        """Slow reference without stateful_windows: the forward LSTM over the whole video (its
        state carried), the backward LSTM per window; -log p summed in float64, over kept chunks."""
        keep = (y != ignore_index).double()
        fwd = head.directions(x)[0]
        total = reference_nll(fwd, y, keep) * keep.sum()
        for s in range(0, x.shape[0], window):
            bwd = head.directions(x[s : s + window])[1]
            k = keep[s : s + window]
            if k.sum() > 0:
                total = total + reference_nll(bwd, y[s : s + window], k) * k.sum()
        return total / keep.sum().clamp(min=1)

    def test_equals_the_forward_run_plus_each_windows_backward_run(self, head):
        from scalekit.sequence import truncated_bptt_loss

        x, y = torch.randn(11, 2, 6), torch.randint(0, 4, (11, 2))
        for window in (1, 4, 11, 50):
            torch.testing.assert_close(truncated_bptt_loss(head, x, y, window).double(),
                                       self.reference(head, x, y, window))

    def test_one_window_is_the_heads_mean_loss_of_both_directions(self, head):
        from scalekit.sequence import truncated_bptt_loss

        x, y = torch.randn(7, 1, 6), torch.randint(0, 4, (7, 1))
        mean = head.loss(outputs(head, x), y)
        torch.testing.assert_close(truncated_bptt_loss(head, x, y, window=7),
                                   mean["loss_forward"] + mean["loss_backward"])
        joint = head.loss(outputs(head, x), y, mode="joint")["loss_joint"]
        torch.testing.assert_close(truncated_bptt_loss(head, x, y, window=100, mode="joint"), joint)

    def test_ignored_chunks_are_neither_scored_nor_counted(self, head):
        from scalekit.sequence import truncated_bptt_loss

        x, y = torch.randn(9, 1, 6), torch.randint(0, 4, (9, 1))
        y[3:6] = -1
        torch.testing.assert_close(truncated_bptt_loss(head, x, y, window=4, ignore_index=-1).double(),
                                   self.reference(head, x, y, 4, ignore_index=-1))
        none = truncated_bptt_loss(head, x, torch.full((9, 1), -1), window=4, ignore_index=-1)
        assert none.item() == 0.0

    def test_gradients_stay_within_a_window(self, head):
        """Truncation: the first window's inputs get no gradient from a later window's targets."""
        from scalekit.sequence import truncated_bptt_loss

        x, y = torch.randn(8, 1, 6, requires_grad=True), torch.randint(0, 4, (8, 1))
        grads = []
        for last in (0, 3):
            y2 = y.clone()
            y2[4:] = last
            x.grad = None
            truncated_bptt_loss(head, x, y2, window=4).backward()
            grads.append(x.grad.clone())
        assert torch.equal(grads[0][:4], grads[1][:4])
        assert not torch.equal(grads[0][4:], grads[1][4:])

    def test_continuation_indicators_reach_the_head(self, head):
        from scalekit.sequence import truncated_bptt_loss

        x, labels = torch.randn(8, 1, 6), torch.tensor([0, 0, 2, 2, 2, 1, 1, 1])[:, None]
        cont = continuation_indicators(labels)
        trimmed = sum(truncated_bptt_loss(head, x[a:e], labels[a:e], window=8) * (e - a)
                      for a, e in ((0, 2), (2, 5), (5, 8))) / 8
        torch.testing.assert_close(truncated_bptt_loss(head, x, labels, window=8, cont=cont), trimmed)

    def test_bad_arguments_and_an_empty_video(self, head):
        from scalekit.sequence import truncated_bptt_loss

        x = torch.randn(5, 1, 6)
        with pytest.raises(ValueError, match=r"targets must be a \[T, N\] = \[5, 1\] tensor, got \[5\]"):
            truncated_bptt_loss(head, x, torch.zeros(5, dtype=torch.int64), window=2)
        with pytest.raises(ValueError, match="window must be >= 1"):
            truncated_bptt_loss(head, x, torch.zeros(5, 1, dtype=torch.int64), window=0)
        with pytest.raises(ValueError, match="mode must be one of"):
            truncated_bptt_loss(head, x, torch.zeros(5, 1, dtype=torch.int64), window=2, mode="both")
        empty = truncated_bptt_loss(head, torch.randn(0, 1, 6), torch.zeros(0, 1, dtype=torch.int64), window=2)
        assert empty.shape == () and empty.item() == 0.0
