"""The bi-directional LSTM's state handling: windows, continuation indicators, the memory limit."""

import pytest
import torch

from scalekit.sequence import BiLSTMHead, memory_limited_scores, stateful_windows


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
