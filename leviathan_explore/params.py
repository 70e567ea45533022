"""Analytic parameter accounting, and iso-body / isoparametric matching.

The one place that counts parameters. ``count_params(cfg)`` equals
``sum(p.numel() for p in TransformerLM(cfg).parameters())`` for every valid
configuration (tested over random configurations); the blocks are:

* ``embedding``  the input table, ``V * D`` (0 for Leviathan);
* ``generator``  ``k*b*d_seed + M*(d_seed^2 + 2*d_seed) + M*d_seed*kappa*r + M*r*D`` (0 for dense);
* ``body``       all decoder blocks plus the final norm;
* ``head``       the output matrix ``V * D`` (0 when tied: it is the table).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from .config import ConfigError, LeviathanConfig, ModelConfig, integer_base


@dataclass(frozen=True)
class ParamBreakdown:
    embedding: int
    generator: int
    body: int
    head: int
    n_layers: int
    d_model: int

    @property
    def total(self) -> int:
        return self.embedding + self.generator + self.body + self.head

    @property
    def non_embedding(self) -> int:
        """Everything but the input table and the generator: body + head."""
        return self.body + self.head

    def shares(self) -> dict[str, float]:
        t = self.total
        return {k: getattr(self, k) / t for k in ("embedding", "generator", "body", "head")}

    def to_dict(self) -> dict[str, int]:
        d = asdict(self)
        d["total"] = self.total
        return d


def generator_params(vocab_size: int, d_model: int, lev: LeviathanConfig) -> dict[str, int]:
    """Parameters of each generator stage."""
    b = integer_base(vocab_size, lev.k)
    ds, M = lev.d_seed, lev.n_modes
    return {
        "codebooks": lev.k * b * ds,
        "seed_projection": M * (ds * ds + 2 * ds),  # dense map + layer-norm scale and shift
        "spline_coefficients": M * ds * lev.n_knots * lev.rank,
        "output_projection": M * lev.rank * d_model,
    }


def layer_params(cfg: ModelConfig) -> int:
    """One decoder block: attention, SwiGLU, two RMSNorm weights."""
    D, hd = cfg.d_model, cfg.head_dim
    attn = D * cfg.n_heads * hd + 2 * D * cfg.kv_heads * hd + cfg.n_heads * hd * D
    return attn + 3 * D * cfg.ffn_dim + 2 * D


def count_params(cfg: ModelConfig) -> ParamBreakdown:
    V, D = cfg.vocab_size, cfg.d_model
    table = cfg.token_repr == "table"
    return ParamBreakdown(
        embedding=V * D if table else 0,
        generator=0 if table else sum(generator_params(V, D, cfg.leviathan).values()),
        body=cfg.n_layers * layer_params(cfg) + D,
        head=0 if cfg.tie_embeddings else V * D,
        n_layers=cfg.n_layers,
        d_model=D,
    )


def real_param_count(model) -> ParamBreakdown:
    """The same breakdown measured from a built ``TransformerLM`` (tied weights counted once)."""
    seen: set[int] = set()
    blocks = {"embedding": 0, "generator": 0, "body": 0, "head": 0}
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen:
            continue
        seen.add(id(p))
        if name.startswith("embed_tokens."):
            blocks["embedding"] += p.numel()
        elif name.startswith("generator."):
            blocks["generator"] += p.numel()
        elif name.startswith("lm_head."):
            blocks["head"] += p.numel()
        else:
            blocks["body"] += p.numel()
    return ParamBreakdown(**blocks, n_layers=model.cfg.n_layers, d_model=model.cfg.d_model)


# ---- matching --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Match:
    """A Leviathan configuration matched to a dense one."""

    config: ModelConfig
    params: ParamBreakdown
    target_total: int
    by: str

    @property
    def relative_gap(self) -> float:
        """(Leviathan total - dense total) / dense total."""
        return (self.params.total - self.target_total) / self.target_total


def isobody_match(dense: ModelConfig) -> ModelConfig:
    """Same body (width, depth, heads); the input table swapped for the generator; untied head."""
    return dense.replace(token_repr="leviathan", tie_embeddings=False)


MatchBy = Literal["depth", "width", "ffn"]


def isoparametric_match(dense: ModelConfig, by: MatchBy = "depth") -> Match:
    """The Leviathan configuration whose total is closest to the dense model's.

    by="depth": same width, extra layers (the paper's choice); "width": same depth,
    wider model (d_model a multiple of 2*n_heads); "ffn": same width and depth, a
    wider SwiGLU hidden layer.
    """
    target = count_params(dense).total
    base = isobody_match(dense)
    if by == "depth":
        per_layer = layer_params(base)
        fixed = count_params(base.replace(n_layers=0)).total
        guess = max(1, (target - fixed) // per_layer)
        candidates = [base.replace(n_layers=n) for n in range(max(1, guess - 1), guess + 3)]
    elif by == "width":
        step = 2 * dense.n_heads
        candidates = []
        d = step
        while True:
            cand = base.replace(d_model=d)
            candidates.append(cand)
            if count_params(cand).total >= target or d > 64 * dense.d_model:
                break
            d += step
        candidates = candidates[-2:]
    elif by == "ffn":
        if dense.n_layers == 0:
            raise ConfigError("n_layers", 0, "ffn matching needs at least one layer")
        no_ffn = count_params(base.replace(ffn_hidden=1)).total - 3 * base.d_model * base.n_layers
        per_unit = 3 * base.d_model * base.n_layers
        guess = max(1, (target - no_ffn) // per_unit)
        candidates = [base.replace(ffn_hidden=f) for f in (max(1, guess), guess + 1)]
    else:
        raise ConfigError("by", by, "must be 'depth', 'width' or 'ffn'")
    best = min(candidates, key=lambda c: (abs(count_params(c).total - target), c.n_layers))
    return Match(config=best, params=count_params(best), target_total=target, by=by)


def comparison(dense: ModelConfig, by: MatchBy = "depth") -> dict[str, dict]:
    """The ``params`` report: dense, iso-body Leviathan and isoparametric Leviathan."""
    iso = isoparametric_match(dense, by)
    out = {
        "dense": count_params(dense).to_dict(),
        "leviathan_isobody": count_params(isobody_match(dense)).to_dict(),
        "leviathan_isoparam": iso.params.to_dict(),
    }
    out["leviathan_isoparam"]["relative_gap"] = iso.relative_gap
    out["leviathan_isoparam"]["matched_by"] = by
    if by == "ffn":
        out["leviathan_isoparam"]["ffn_hidden"] = iso.config.ffn_dim
    out["dense"]["vocab_size"] = dense.vocab_size
    out["dense"]["tied"] = dense.tie_embeddings
    return out
