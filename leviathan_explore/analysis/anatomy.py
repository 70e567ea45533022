"""Anatomy of a token: one id followed through the generator's four stages.

``trace_token`` records every intermediate of ``LeviathanGenerator`` for a
single id as numpy arrays (the figures in ``viz.anatomy`` draw them), using the
generator's own stage methods so the trace is the computation, not a copy of it
(``LeviathanGenerator.mode_factors`` opens stage 3 further: the per-coordinate factors
whose product is a mode feature).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..generator import bspline_active, bspline_basis
from .embedding_sources import EmbeddingSource


@dataclass(frozen=True)
class TokenPiece:
    position: int
    token_id: int
    text: str


def tokenize(source: EmbeddingSource, text: str, max_tokens: int = 256) -> list[TokenPiece]:
    """The model-space tokens of ``text``; ValueError for empty or whitespace-only text."""
    if not isinstance(text, str) or text.strip() == "":
        raise ValueError("the text is empty or only whitespace: type at least one visible character")
    ids = source.encode(text)[:max_tokens]
    return [TokenPiece(p, int(i), source.text(int(i))) for p, i in enumerate(ids)]


@dataclass(frozen=True)
class TokenTrace:
    """Every stage of the generator for one id (M modes, k digits, d_seed, r, D)."""

    token_id: int
    text: str
    base: int
    digits: np.ndarray            # [k] base-b digits, most significant first
    codebook_rows: np.ndarray     # [k, d_seed] C_j[i_j]
    seed: np.ndarray              # [d_seed] z = sum of the rows
    sigmoid: np.ndarray           # [M, d_seed] u = sigmoid(LN(W z) / 2)
    active_index: np.ndarray      # [M, d_seed, 3] the non-zero B-spline basis functions
    active_weight: np.ndarray     # [M, d_seed, 3] their weights (sum to 1)
    mode_features: np.ndarray     # [M, r] Psi
    embedding: np.ndarray         # [D] e(i)
    table_row: np.ndarray | None  # [D] the same id's dense table row, None when unavailable
    n_knots: int


@torch.no_grad()
def trace_token(source: EmbeddingSource, token_id: int) -> TokenTrace:
    """Follow ``token_id`` through the generator of ``source``."""
    gen = source.generator
    if isinstance(token_id, bool) or not isinstance(token_id, (int, np.integer)):
        raise ValueError(f"token id {token_id!r} must be an integer")
    ids = torch.tensor([int(source.check_ids([token_id])[0])])
    digits = gen.coordinates(ids)[0]                                          # [k]
    rows = gen.codebooks.float()[torch.arange(gen.cfg.k), digits]            # [k, d_seed]
    seed = gen.seed(ids)                                                      # [1, d_seed]
    u = gen.project_seed(seed)                                                # [1, M, d_seed]
    idx, w = bspline_active(u[0], gen.cfg.n_knots)                            # [M, d_seed, 3]
    psi = gen.mode_features(u)                                                # [1, M, r]
    emb = gen.project_out(psi)[0]                                             # [D]
    row = source.dense_rows([token_id])[0] if source.has_dense_row(int(token_id)) else None
    if row is not None and not np.isfinite(row).all():
        row = None
    return TokenTrace(
        token_id=int(token_id), text=source.text(int(token_id)), base=gen.base,
        digits=digits.numpy(), codebook_rows=rows.numpy(), seed=seed[0].numpy(), sigmoid=u[0].numpy(),
        active_index=idx.numpy(), active_weight=w.numpy(), mode_features=psi[0].numpy(),
        embedding=emb.numpy(), table_row=row, n_knots=gen.cfg.n_knots)


def bspline_curves(n_knots: int, n_points: int = 401) -> tuple[np.ndarray, np.ndarray]:
    """The generator's normalised basis on a grid: (u [n_points], B [n_points, n_knots])."""
    u = torch.linspace(0.0, 1.0, n_points)
    return u.numpy(), bspline_basis(u, n_knots).numpy()
