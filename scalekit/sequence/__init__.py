"""MSB-RNN's sequence blocks (thesis §5.3.3, §5.4): the bi-directional LSTM head and its
loss, continuation indicators, stateful truncated-BPTT windows and a whole video's loss, the memory-limit
analysis, and clips from per-chunk scores (inference post-processing)."""

from scalekit.sequence.bilstm import (BiLSTMHead, continuation_indicators, memory_limited_scores, stateful_windows,
                                      truncated_bptt_loss)
from scalekit.sequence.clips import clips_from_scores

__all__ = ["BiLSTMHead", "continuation_indicators", "stateful_windows", "truncated_bptt_loss", "memory_limited_scores",
           "clips_from_scores"]
