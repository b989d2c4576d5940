"""The bi-directional LSTM's state handling: windows, continuation indicators, the memory limit."""

import pytest
import torch

from scalekit.sequence import BiLSTMHead, memory_limited_scores, stateful_windows, truncated_bptt_loss


class TestBiLSTM:
    def setup_method(self):
        torch.manual_seed(0)
        self.head = BiLSTMHead(in_dim=8, hidden=6, num_classes=4)
        self.x = torch.randn(17, 2, 8)

    def test_windowed_stateful_forward_equals_the_whole_sequence(self):
        whole_f, _, _ = self.head.directions(self.x)
        windows = list(stateful_windows(self.head, self.x, window=5))
        torch.testing.assert_close(torch.cat([w["forward"] for w in windows]), whole_f)
        assert [(w["start"], w["end"]) for w in windows] == [(0, 5), (5, 10), (10, 15), (15, 17)]

    def test_continuation_indicators_reset_exactly_the_marked_steps(self):
        cont = torch.ones(17, 2)
        cont[0] = 0
        cont[7, 0] = 0  # row 0: a second video starts at step 7
        f, b, _ = self.head.directions(self.x, cont=cont)
        f1, b1, _ = self.head.directions(self.x[:7, :1])
        f2, b2, _ = self.head.directions(self.x[7:, :1])
        torch.testing.assert_close(f[:, 0], torch.cat([f1, f2])[:, 0])
        torch.testing.assert_close(b[:, 0], torch.cat([b1, b2])[:, 0])
        f_all, b_all, _ = self.head.directions(self.x[:, 1:])  # row 1 is untouched
        torch.testing.assert_close(f[:, 1:], f_all)
        torch.testing.assert_close(b[:, 1:], b_all)

    def test_memory_limit(self):
        unrestricted = self.head.directions(self.x)[0]
        torch.testing.assert_close(memory_limited_scores(self.head, self.x, k=17), unrestricted)
        torch.testing.assert_close(memory_limited_scores(self.head, self.x, k=40), unrestricted)
        k = 4
        limited = memory_limited_scores(self.head, self.x, k)
        for t in range(17):
            window = self.x[max(0, t - k + 1) : t + 1]
            torch.testing.assert_close(limited[t], self.head.directions(window)[0][-1])

    def test_scores_average_both_directions_and_learn(self):
        scores, _ = self.head(self.x)
        f, b, _ = self.head.directions(self.x)
        torch.testing.assert_close(scores, (f + b) / 2)
        with pytest.raises(ValueError, match=r"x must be \[T, N, in_dim\]"):
            self.head(self.x[0])
        with pytest.raises(ValueError, match="num_classes is required"):
            BiLSTMHead(8, 6)


class TestUniDirectional:
    """``direction="forward"`` / ``"backward"``: one LSTM, trained as its own model (Table 5.4)."""

    def setup_method(self):
        torch.manual_seed(0)
        self.both = BiLSTMHead(in_dim=8, hidden=6, num_classes=4)
        self.x = torch.randn(11, 2, 8)

    def uni(self, direction):
        head = BiLSTMHead(in_dim=8, hidden=6, num_classes=4, direction=direction)
        own = {k: v for k, v in self.both.state_dict().items() if k.startswith(direction)}
        head.load_state_dict(own)  # strict: exactly the present direction's cell and classifier
        return head

    @pytest.mark.parametrize("direction, pick", [("forward", 0), ("backward", 1)])
    def test_is_the_bi_lstms_direction_alone(self, direction, pick):
        head = self.uni(direction)
        out = head.directions(self.x)
        assert out[1 - pick] is None
        torch.testing.assert_close(out[pick], self.both.directions(self.x)[pick])
        torch.testing.assert_close(head(self.x)[0], out[pick])  # the scores are that direction's

    def test_forward_sees_only_the_past_and_backward_only_the_future(self):
        fwd, bwd, t0 = self.uni("forward"), self.uni("backward"), 5
        later, earlier = self.x.clone(), self.x.clone()
        later[t0:] += 3.0
        earlier[: t0 + 1] += 3.0
        f, f_later = fwd(self.x)[0], fwd(later)[0]
        torch.testing.assert_close(f_later[:t0], f[:t0])
        assert (f_later[t0] - f[t0]).abs().max() > 1e-3
        b, b_earlier = bwd(self.x)[0], bwd(earlier)[0]
        torch.testing.assert_close(b_earlier[t0 + 1 :], b[t0 + 1 :])
        assert (b_earlier[t0] - b[t0]).abs().max() > 1e-3

    @pytest.mark.parametrize("direction", ["forward", "backward"])
    def test_loss_has_only_the_present_direction(self, direction):
        head = self.uni(direction)
        y = torch.randint(0, 4, (11, 2))
        f, b, _ = head.directions(self.x)
        probs = f if direction == "forward" else b
        losses = head.loss({direction: probs}, y)
        assert list(losses) == [f"loss_{direction}"]
        want = torch.nn.functional.nll_loss(probs.log().flatten(0, 1), y.flatten())
        torch.testing.assert_close(losses[f"loss_{direction}"], want)
        torch.testing.assert_close(head.loss({direction: probs}, y, mode="joint")["loss_joint"], want)
        whole = truncated_bptt_loss(head, self.x, y, window=4)
        whole.backward()
        cell = getattr(head, f"{direction}_cell")
        assert cell.weight_ih.grad.abs().sum() > 0
        with pytest.raises(ValueError, match=f"outputs must be a dict with '{direction}'"):
            head.loss({"other": probs}, y)

    def test_memory_limit_needs_a_forward_lstm(self):
        fwd = self.uni("forward")
        torch.testing.assert_close(memory_limited_scores(fwd, self.x, 3), memory_limited_scores(self.both, self.x, 3))
        with pytest.raises(ValueError, match="needs a head with a forward LSTM"):
            memory_limited_scores(self.uni("backward"), self.x, 3)

    def test_bad_direction_is_named(self):
        with pytest.raises(ValueError, match="direction must be one of"):
            BiLSTMHead(8, 6, 4, direction="left")
