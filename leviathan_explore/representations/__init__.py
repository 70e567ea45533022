"""Token representations: how an id becomes the vector that enters the residual stream.

Every representation is one module behind the same small interface::

    rep = build_representation(cfg)        # an nn.Module: ids [...] -> [..., d_model] float32
    rep.table()                            # the whole vocabulary [V, D] (export, geometry)
    rep.stages(ids)                        # named intermediates, for the Anatomy tab
    stage_params(cfg)                      # analytic parameters of each stage (params.py counts them)

``table`` (the dense baseline's ``nn.Embedding``) and ``leviathan`` (generator.py, whose
``LeviathanGenerator.stage_params`` counts its stages) are the paper's two; the others are
its neighbours, the simpler ways of shrinking a table:

* ``factorized``: ALBERT's factorised table, a V x E table then an E x D projection;
* ``codebooks``: the generator's stage 1 alone (k digit codebooks summed) projected to D,
  the quotient-remainder embedding of Shi et al. (2020) generalised to k digits;
* ``hashed``: each id the sum of h rows of a B-row table chosen by h hash functions
  (the hashing trick of Svenstrup et al. 2017, without their per-id importance weights).

Each module lists which of its stages are table lookups (``LOOKUP_STAGES``): they count as
``embedding`` in ``params.ParamBreakdown`` (and cost no FLOPs), the others as ``generator``.
"""

from __future__ import annotations

from ..config import TOKEN_REPRS, ConfigError, ModelConfig
from ..generator import LeviathanGenerator
from .codebooks import CodebookRepresentation
from .factorized import FactorizedTable
from .hashed import HashedEmbedding

# name -> module class; "table" and "leviathan" are built by model.TransformerLM itself (their
# parameter names, embed_tokens.* and generator.*, map one-to-one to checkpoints and HF Llama)
MODULES = {"factorized": FactorizedTable, "codebooks": CodebookRepresentation, "hashed": HashedEmbedding}


def stage_params(cfg: ModelConfig) -> dict[str, int]:
    """Parameters of each stage of ``cfg``'s token representation (the input side only)."""
    V, D = cfg.vocab_size, cfg.d_model
    if cfg.token_repr == "table":
        return {"table": V * D}
    if cfg.token_repr == "leviathan":
        return LeviathanGenerator.stage_params(V, D, cfg.leviathan)
    if cfg.token_repr in MODULES:
        return MODULES[cfg.token_repr].stage_params(cfg)
    raise ConfigError("token_repr", cfg.token_repr, f"must be one of {list(TOKEN_REPRS)}")


def lookup_stages(token_repr: str) -> tuple[str, ...]:
    """The stages of a representation that are table lookups (counted as ``embedding``)."""
    if token_repr == "table":
        return ("table",)
    if token_repr == "leviathan":
        return ()  # the paper's count: every generator parameter, codebooks included
    return MODULES[token_repr].LOOKUP_STAGES


def build_representation(cfg: ModelConfig):
    """The module of a non-table, non-Leviathan representation."""
    if cfg.token_repr not in MODULES:
        raise ConfigError("token_repr", cfg.token_repr, f"is built by TransformerLM; modules: {sorted(MODULES)}")
    return MODULES[cfg.token_repr](cfg)


__all__ = ["MODULES", "build_representation", "lookup_stages", "stage_params", "CodebookRepresentation",
           "FactorizedTable", "HashedEmbedding"]
