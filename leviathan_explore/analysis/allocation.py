"""Where the parameters of a dense model go as it grows, per tokenizer.

All counting is ``params.count_params``; this module only chooses which
configurations to count (a ladder of GPT-style sizes) and tabulates the shares
that the allocation figures plot.
"""

from __future__ import annotations

import pandas as pd

from ..config import TOKEN_REPRS, TOKENIZER_VOCAB, ConfigError, LeviathanConfig, ModelConfig, preset
from ..params import comparison, count_params

# (d_model, n_layers, n_heads) of a GPT-style size ladder, ~1M to ~1.5B body parameters.
MODEL_LADDER: tuple[tuple[int, int, int], ...] = (
    (128, 2, 4), (256, 4, 4), (384, 6, 6), (512, 6, 8), (512, 8, 8), (768, 12, 12),
    (1024, 16, 16), (1024, 24, 16), (1536, 24, 16), (2048, 24, 16),
)

PAPER_POINT_PRESET = "paper-109m"


def embedding_share_curve(tokenizers: dict[str, int] | None = None, *, tied: bool = False,
                          ladder: tuple[tuple[int, int, int], ...] = MODEL_LADDER) -> pd.DataFrame:
    """The input table's share of all parameters along ``ladder``, for each tokenizer.

    tokenizers: name -> vocabulary size (default: the three shipped tokenizers).
    Returns one row per (tokenizer, size) with columns tokenizer, vocab_size,
    d_model, n_layers, total, embedding, embedding_share (input table / total) and
    vocab_share ((input table + head) / total; equal to embedding_share when tied).
    """
    tokenizers = dict(TOKENIZER_VOCAB if tokenizers is None else tokenizers)
    rows = []
    for name, vocab in tokenizers.items():
        for d_model, n_layers, n_heads in ladder:
            cfg = ModelConfig(vocab_size=vocab, d_model=d_model, n_layers=n_layers, n_heads=n_heads,
                              tie_embeddings=tied)
            rows.append(_share_row(name, cfg))
    return pd.DataFrame(rows)


def paper_point(tied: bool = False) -> dict:
    """The ``paper-109m`` preset (o200k, width 256, 6 layers, SwiGLU 4D) as one row of the curve."""
    return _share_row("o200k_base", preset(PAPER_POINT_PRESET, tie_embeddings=tied))


def _share_row(tokenizer: str, cfg: ModelConfig) -> dict:
    p = count_params(cfg)
    return dict(tokenizer=tokenizer, vocab_size=cfg.vocab_size, d_model=cfg.d_model,
                n_layers=cfg.n_layers, total=p.total, embedding=p.embedding,
                embedding_share=p.embedding / p.total,
                vocab_share=(p.embedding + p.head) / p.total)


def allocation_report(*, vocab_size: int, d_model: int, n_layers: int, n_heads: int,
                      tied: bool, generator: dict, match_by: str = "depth") -> dict:
    """``params.comparison`` for settings chosen in the page, validated by ``ModelConfig``.

    generator: LeviathanConfig keyword arguments (k, d_seed, n_modes, n_knots, rank).
    Raises ConfigError naming the bad value (e.g. vocab_size=0, or 10**9 above the limit).
    """
    if not isinstance(generator, dict):
        raise ConfigError("generator", generator, "must be a dict of generator settings")
    dense = ModelConfig(vocab_size=vocab_size, d_model=d_model, n_layers=n_layers, n_heads=n_heads,
                        tie_embeddings=tied, leviathan=LeviathanConfig(**generator))
    return comparison(dense, by=match_by)


# The representations that can replace the dense table (every one of config.TOKEN_REPRS but the table).
REPLACEMENTS: tuple[str, ...] = tuple(r for r in TOKEN_REPRS if r != "table")


def representation_report(*, vocab_size: int, d_model: int, n_layers: int, n_heads: int, tied: bool,
                          generator: dict, match_by: str = "depth", representation: str = "leviathan",
                          factorized_dim: int = 16, hash_buckets: int = 1024, hash_functions: int = 2) -> dict:
    """``allocation_report`` for any representation that replaces the table (``REPLACEMENTS``):
    ``params.comparison(dense, by=match_by, repr=representation)``, whose ``leviathan_*`` entries
    hold that representation's matches and whose ``representation`` entry its stage split.

    generator: LeviathanConfig keyword arguments (the generator's, and the codebooks' k and
    d_seed); factorized_dim: the factorised table's width E; hash_buckets, hash_functions: the
    hashed embedding's B and h. Raises ConfigError naming the bad value.
    """
    if representation not in REPLACEMENTS:
        raise ConfigError("representation", representation, f"must be one of {list(REPLACEMENTS)}")
    if not isinstance(generator, dict):
        raise ConfigError("generator", generator, "must be a dict of generator settings")
    dense = ModelConfig(vocab_size=vocab_size, d_model=d_model, n_layers=n_layers, n_heads=n_heads,
                        tie_embeddings=tied, leviathan=LeviathanConfig(**generator), factorized_dim=factorized_dim,
                        hash_buckets=hash_buckets, hash_functions=hash_functions)
    return comparison(dense, by=match_by, repr=representation)
