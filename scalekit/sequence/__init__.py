"""MSB-RNN's sequence blocks (thesis §5.3.3): the bi-directional LSTM head,
stateful truncated-BPTT windows and the memory-limit analysis."""

from scalekit.sequence.bilstm import BiLSTMHead, memory_limited_scores, stateful_windows

__all__ = ["BiLSTMHead", "stateful_windows", "memory_limited_scores"]
