"""Validation loss, perplexity, and the loss split by token-frequency bucket.

Buckets are defined by training-set frequency (``TokenData.token_counts()``):
sort the ids by count, most frequent first, and walk the cumulative share of
training tokens. An id whose preceding mass is below 50% is **frequent** (the
ids that together cover the top half of all training tokens), below 90% is
**medium** (the next 40%), anything else is **rare**, and so is every id that
never occurs in training. Each bucket's loss is the mean loss over validation
positions whose *target* lies in the bucket: a table-free generator shares
parameters across ids, so its advantage (or cost) should show on rare targets.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from typing import Callable

import numpy as np
import torch

from .batches import WindowSampler, eval_window_starts

BUCKETS = ("frequent", "medium", "rare")
BUCKET_EDGES = (0.5, 0.9)  # cumulative training-token mass where frequent and medium end


def frequency_buckets(counts: np.ndarray) -> np.ndarray:
    """Bucket index (0 frequent, 1 medium, 2 rare) of every id, from training counts [V]."""
    counts = np.asarray(counts, dtype=np.float64)
    buckets = np.full(len(counts), 2, dtype=np.int64)
    total = counts.sum()
    if total <= 0:
        return buckets
    order = np.argsort(-counts, kind="stable")
    mass_before = (np.cumsum(counts[order]) - counts[order]) / total  # share of tokens in more frequent ids
    sorted_buckets = np.where(mass_before < BUCKET_EDGES[0], 0, np.where(mass_before < BUCKET_EDGES[1], 1, 2))
    sorted_buckets[counts[order] == 0] = 2
    buckets[order] = sorted_buckets
    return buckets


def unigram_entropy(counts: np.ndarray) -> float:
    """Entropy in nats of the unigram distribution ``p = counts / sum(counts)``: ``-sum p ln p``.

    The loss of the best model that ignores context; a language model that learns
    anything beyond token frequencies goes below it.
    """
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total <= 0:
        raise ValueError("unigram_entropy needs at least one counted token")
    p = counts[counts > 0] / total
    return float(-(p * np.log(p)).sum())


@torch.no_grad()
def evaluate(model: torch.nn.Module, windows: torch.Tensor, bucket_of: torch.Tensor, batch_size: int,
             device: torch.device, autocast_dtype: torch.dtype | None = None,
             all_reduce=None) -> dict:
    """Loss over ``windows`` [n, T+1] (this rank's share), overall and per frequency bucket.

    ``bucket_of`` [V] maps a target id to its bucket. ``all_reduce`` (optional) sums a
    tensor across ranks in place, so every rank returns the global figures.
    Returns ``{"val_loss", "val_ppl", "bucket_losses": {name: loss or None}, "val_tokens"}``.
    """
    was_training = model.training
    model.eval()
    sums = torch.zeros(len(BUCKETS) + 1, dtype=torch.float64, device=device)    # per bucket, then total
    counts = torch.zeros(len(BUCKETS) + 1, dtype=torch.float64, device=device)
    bucket_of = bucket_of.to(device)
    amp = torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None else nullcontext()
    for start in range(0, len(windows), batch_size):
        w = windows[start:start + batch_size].to(device)
        x, y = w[:, :-1], w[:, 1:]
        with amp:
            loss = model(x, y, reduction="none").double()  # [B, T]
        b = bucket_of[y].reshape(-1)
        sums[:len(BUCKETS)] += torch.bincount(b, weights=loss.reshape(-1), minlength=len(BUCKETS))
        counts[:len(BUCKETS)] += torch.bincount(b, minlength=len(BUCKETS)).double()
        sums[-1] += loss.sum()
        counts[-1] += loss.numel()
    if all_reduce is not None:
        all_reduce(sums)
        all_reduce(counts)
    model.train(was_training)
    sums, counts = sums.cpu().tolist(), counts.cpu().tolist()
    val_loss = sums[-1] / max(counts[-1], 1.0)
    return {
        "val_loss": val_loss,
        "val_ppl": math.exp(min(val_loss, 700.0)),
        "bucket_losses": {name: (sums[i] / counts[i] if counts[i] > 0 else None) for i, name in enumerate(BUCKETS)},
        "val_tokens": int(counts[-1]),
    }


class Evaluator:
    """The validation of one run: when (every ``every`` steps, and at ``last_step``), on which
    fixed windows of the validation split (this rank's share), and the ``eval`` record it makes.

    ``evaluate_fn`` is ``evaluate`` unless a caller substitutes it (a fault-injection test
    pauses there).
    """

    def __init__(self, windows: torch.Tensor, bucket_of: torch.Tensor, *, every: int, last_step: int,
                 batch_size: int, device: torch.device, autocast_dtype: torch.dtype | None = None,
                 all_reduce: Callable[[torch.Tensor], None] | None = None, evaluate_fn: Callable = evaluate):
        self.windows, self.bucket_of = windows, bucket_of
        self.every, self.last_step = every, last_step
        self.batch_size, self.device, self.autocast_dtype = batch_size, device, autocast_dtype
        self.all_reduce, self.evaluate_fn = all_reduce, evaluate_fn

    @classmethod
    def for_split(cls, tokens: np.ndarray, token_counts: np.ndarray, *, seq_len: int, seed: int, n_sequences: int,
                  rank: int = 0, world_size: int = 1, **settings) -> "Evaluator":
        """``n_sequences`` evenly spaced windows of ``tokens`` (``eval_window_starts``), rank ``rank``
        taking every ``world_size``-th; buckets from the training ``token_counts``."""
        split = WindowSampler(tokens, seq_len, seed, split="validation")
        windows = split.windows(eval_window_starts(len(tokens), seq_len, n_sequences))[rank::world_size]
        bucket_of = torch.from_numpy(frequency_buckets(np.asarray(token_counts)))
        return cls(windows, bucket_of, **settings)

    def should_evaluate(self, step: int) -> bool:
        return step % self.every == 0 or step == self.last_step

    def evaluate(self, model: torch.nn.Module, step: int, tokens: int) -> dict:
        """The ``eval`` record of ``model`` after ``step`` steps and ``tokens`` training tokens."""
        result = self.evaluate_fn(model, self.windows, self.bucket_of, self.batch_size, self.device,
                                  self.autocast_dtype, all_reduce=self.all_reduce)
        return {"type": "eval", "step": step, "tokens": tokens, "val_loss": result["val_loss"],
                "val_ppl": result["val_ppl"], "bucket_losses": result["bucket_losses"]}
