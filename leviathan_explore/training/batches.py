"""Sequence packing: batches are contiguous windows of ``seq_len + 1`` tokens.

The token stream (documents separated by end-of-text) is cut into windows
starting at ``w * seq_len``; window ``w`` gives inputs ``x = t[s:s+T]`` and
targets ``y = t[s+1:s+T+1]``, so consecutive windows share one token and every
token is a target once per epoch. Sample ``g`` (counting every sequence the run
has consumed) is window ``perm_e[g mod W]`` of epoch ``e = g div W``, where
``perm_e`` is a permutation drawn from ``(seed, e)``. The order is a pure
function of the seed and the sample counter (the *data position*), so a resumed
run, or a run split over ranks, sees exactly the same sequences.
"""

from __future__ import annotations

import numpy as np
import torch


class WindowSampler:
    """Deterministic shuffled windows of a 1-D token array (e.g. a ``np.memmap``)."""

    def __init__(self, tokens: np.ndarray, seq_len: int, seed: int, split: str = "train"):
        self.tokens, self.seq_len, self.seed = tokens, seq_len, seed
        self.n_windows = (len(tokens) - 1) // seq_len
        if self.n_windows < 1:
            raise ValueError(f"the {split} split has {len(tokens)} tokens, fewer than seq_len+1={seq_len + 1}; "
                             f"use a smaller --seq-len or more data")
        self._epoch, self._perm = -1, None

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.n_windows)
            self._epoch = epoch
        return self._perm

    def window_starts(self, first_sample: int, count: int) -> np.ndarray:
        """Start offsets of samples ``first_sample .. first_sample + count - 1``."""
        starts = np.empty(count, dtype=np.int64)
        for i in range(count):
            epoch, index = divmod(first_sample + i, self.n_windows)
            starts[i] = self._permutation(epoch)[index] * self.seq_len
        return starts

    def windows(self, starts: np.ndarray) -> torch.Tensor:
        """[n, seq_len + 1] int64 token windows."""
        T = self.seq_len + 1
        out = np.empty((len(starts), T), dtype=np.int64)
        for i, s in enumerate(starts):
            out[i] = self.tokens[s:s + T]
        return torch.from_numpy(out)

    def batch(self, first_sample: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets [count, seq_len] of the given samples."""
        w = self.windows(self.window_starts(first_sample, count))
        return w[:, :-1], w[:, 1:]


def eval_window_starts(n_tokens: int, seq_len: int, n_sequences: int) -> np.ndarray:
    """Fixed validation windows: ``n_sequences`` evenly spaced ones (all of them if fewer exist)."""
    n_windows = (n_tokens - 1) // seq_len
    if n_windows < 1:
        raise ValueError(f"the validation split has {n_tokens} tokens, fewer than seq_len+1={seq_len + 1}; "
                         f"use a smaller --seq-len or a larger val_fraction")
    if n_windows <= n_sequences:
        return np.arange(n_windows, dtype=np.int64) * seq_len
    picks = np.unique(np.linspace(0, n_windows - 1, n_sequences).round().astype(np.int64))
    return picks * seq_len
