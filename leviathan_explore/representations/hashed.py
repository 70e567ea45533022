"""Hashed embeddings: each id the sum of h rows of a B-row table chosen by h hash functions.

The hashing trick as in Svenstrup, Hansen and Winther (2017), "Hash Embeddings for Efficient
Word Representations", without their per-id importance weights (those would add V x h
parameters back). Hash j maps id i to ``((a_j i + c_j) mod P) mod B`` with P = 2^31 - 1 and
fixed (a_j, c_j) drawn from ``hash_seed``. Two ids collide completely when all h of their
buckets agree: ``collision_rate()`` is the share of the vocabulary that does.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .base import Representation

PRIME = 2_147_483_647  # 2^31 - 1


def hash_coefficients(h: int, seed: int) -> np.ndarray:
    """[h, 2] int64 (a_j in [1, P), c_j in [0, P)), the same for the same seed on every machine."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(1, PRIME, h), rng.integers(0, PRIME, h)], axis=1).astype(np.int64)


def bucket_ids(ids: np.ndarray | torch.Tensor, coefficients, buckets: int):
    """ids [...] -> bucket indices [..., h] (numpy or torch, int64; a*i < 2^62 fits)."""
    if isinstance(ids, torch.Tensor):
        coef = torch.as_tensor(coefficients, device=ids.device)
        return ((ids.long().unsqueeze(-1) * coef[:, 0] + coef[:, 1]) % PRIME) % buckets
    ids = np.asarray(ids, dtype=np.int64)[..., None]
    return ((ids * coefficients[:, 0] + coefficients[:, 1]) % PRIME) % buckets


def collision_rate(vocab_size: int, buckets: int, functions: int, seed: int) -> float:
    """Share of ids whose h buckets are all shared with at least one other id (indistinguishable)."""
    b = bucket_ids(np.arange(vocab_size), hash_coefficients(functions, seed), buckets)
    _, inverse, counts = np.unique(b, axis=0, return_inverse=True, return_counts=True)
    return float((counts[inverse.reshape(-1)] > 1).mean())


class HashedEmbedding(Representation):
    """e(i) = sum_j R[h_j(i)], R [B, D]; B = ``cfg.hash_buckets``, h = ``cfg.hash_functions``."""

    LOOKUP_STAGES = ("table",)
    STAGE_OF = {"rows": "table"}

    def __init__(self, cfg):
        super().__init__(cfg.vocab_size, cfg.d_model)
        self.buckets, self.functions, self.seed = cfg.hash_buckets, cfg.hash_functions, cfg.hash_seed
        self.init_std = cfg.init_std
        self.register_buffer("coefficients", torch.from_numpy(hash_coefficients(self.functions, self.seed)),
                             persistent=False)
        self.rows = nn.Parameter(torch.empty(self.buckets, cfg.d_model))                # R: [B, D]
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            nn.init.normal_(self.rows, 0.0, self.init_std / math.sqrt(self.functions))  # a sum of h rows

    @staticmethod
    def stage_params(cfg) -> dict[str, int]:
        return {"table": cfg.hash_buckets * cfg.d_model}

    def buckets_of(self, ids: torch.Tensor) -> torch.Tensor:
        return bucket_ids(ids, self.coefficients, self.buckets)                          # [..., h]

    def embed_ids(self, ids: torch.Tensor) -> torch.Tensor:
        return self.rows[self.buckets_of(ids)].sum(-2)

    def stages(self, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        b = self.buckets_of(ids)
        return {"buckets [h]": b, "embedding [D]": self.rows[b].sum(-2)}

    def collision_rate(self) -> float:
        return collision_rate(self.vocab_size, self.buckets, self.functions, self.seed)
