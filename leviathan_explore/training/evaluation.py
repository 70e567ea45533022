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

import numpy as np
import torch

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
