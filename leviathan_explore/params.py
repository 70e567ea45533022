"""Analytic parameter accounting, and iso-body / isoparametric matching.

The one place that counts parameters. ``count_params(cfg)`` equals
``sum(p.numel() for p in TransformerLM(cfg).parameters())`` for every valid
configuration (tested over random configurations); the blocks are:

* ``embedding``  the input table, ``V * D`` (0 for Leviathan); for the neighbours of
  representations/, their table lookups (a factorised V x E table, hash rows, codebooks);
* ``generator``  ``k*b*d_seed + M*(d_seed^2 + 2*d_seed) + M*d_seed*kappa*r + M*r*D`` (0 for dense);
  for the neighbours, the stages that compute (their projections);
* ``body``       all decoder blocks plus the final norm;
* ``head``       the output matrix ``V * D`` (0 when tied: it is the table).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Literal

from .config import ConfigError, LeviathanConfig, ModelConfig


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
    """Parameters of each generator stage (``generator.LeviathanGenerator.stage_params``)."""
    from .generator import LeviathanGenerator

    return LeviathanGenerator.stage_params(vocab_size, d_model, lev)


def layer_params(cfg: ModelConfig) -> int:
    """One decoder block: attention, SwiGLU, two RMSNorm weights."""
    D, hd = cfg.d_model, cfg.head_dim
    attn = D * cfg.n_heads * hd + 2 * D * cfg.kv_heads * hd + cfg.n_heads * hd * D
    return attn + 3 * D * cfg.ffn_dim + 2 * D


def representation_split(cfg: ModelConfig) -> tuple[int, int]:
    """(lookup, computed) parameters of the token representation: table lookups count as
    ``embedding`` (and cost no FLOPs), everything that computes as ``generator``."""
    from .representations import lookup_stages, stage_params

    stages, lookups = stage_params(cfg), lookup_stages(cfg.token_repr)
    lookup = sum(n for k, n in stages.items() if k in lookups)
    return lookup, sum(stages.values()) - lookup


def count_params(cfg: ModelConfig) -> ParamBreakdown:
    V, D = cfg.vocab_size, cfg.d_model
    lookup, computed = representation_split(cfg)
    return ParamBreakdown(
        embedding=lookup,
        generator=computed,
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
        elif name.startswith("represent."):
            rep = model.represent
            stage = rep.STAGE_OF[name[len("represent."):]]
            blocks["embedding" if stage in rep.LOOKUP_STAGES else "generator"] += p.numel()
        elif name.startswith("lm_head."):
            blocks["head"] += p.numel()
        else:
            blocks["body"] += p.numel()
    return ParamBreakdown(**blocks, n_layers=model.cfg.n_layers, d_model=model.cfg.d_model)


# ---- matching --------------------------------------------------------------------------------

# The comparisons a Leviathan model is matched by (docs/method.md, "The comparisons"):
MATCHES: dict[str, str] = {
    "isobody": "iso-body: the dense model's width, depth and heads; the input table swapped for the "
               "generator (fewer parameters)",
    "isoparam": "isoparametric: the generator's savings spent on extra depth (or width, or SwiGLU width) "
                "until the totals match",
    "backbone": "identical backbone (the paper's revision, v2): a tied dense baseline against a Leviathan "
                "of the same width and depth with an untied head",
}
MATCH_TOLERANCE = 0.05  # an isoparametric match further than this from the dense total is refused
PAPER_GENERATOR_SHARE = 0.047  # the paper's generator / the table it replaces, at paper-109m


class MatchError(ConfigError):
    """No isoparametric Leviathan comes within ``MATCH_TOLERANCE`` of the dense total."""

    def __init__(self, message: str, suggestion: LeviathanConfig | None = None):
        super().__init__("match", "isoparam", message)
        self.suggestion = suggestion


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


def isobody_match(dense: ModelConfig, repr: str = "leviathan") -> ModelConfig:
    """Same body (width, depth, heads); the input table swapped for the generator (or another
    representation ``repr``); untied head."""
    return dense.replace(token_repr=repr, tie_embeddings=False)


def backbone_pair(dense: ModelConfig, repr: str = "leviathan") -> tuple[ModelConfig, ModelConfig]:
    """The revision's comparison: (the tied dense model, the Leviathan with the identical backbone).

    The Leviathan keeps the dense model's width, depth and heads and has an untied head,
    so it carries the generator's parameters more than the tied baseline.
    """
    tied = dense.replace(token_repr="table", tie_embeddings=True)
    return tied, isobody_match(dense, repr)


MatchBy = Literal["depth", "width", "ffn"]


def _closest(dense: ModelConfig, by: MatchBy, repr: str = "leviathan") -> Match:
    target = count_params(dense).total
    base = isobody_match(dense, repr)
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


def isoparametric_match(dense: ModelConfig, by: MatchBy = "depth", tolerance: float = MATCH_TOLERANCE,
                        repr: str = "leviathan") -> Match:
    """The Leviathan configuration whose total is closest to the dense model's.

    by="depth": same width, extra layers (the paper's choice); "width": same depth,
    wider model (d_model a multiple of 2*n_heads); "ffn": same width and depth, a
    wider SwiGLU hidden layer. Raises ``MatchError`` (with a suggested smaller
    generator) when the closest candidate is further than ``tolerance`` from the
    dense total, e.g. when the generator alone outweighs the table it replaces.
    """
    match = _closest(dense, by, repr)
    if abs(match.relative_gap) <= tolerance:
        return match
    gen = sum(representation_split(match.config))
    table = dense.vocab_size * dense.d_model
    suggestion = suggest_generator(dense, by, tolerance) if repr == "leviathan" else None
    per_layer = layer_params(match.config)
    if gen >= 0.5 * table:
        why = (f"the {repr} representation alone has {gen:,} parameters, {gen / table:.0%} of the {table:,}-parameter "
               f"table it replaces")
    elif by == "depth" and per_layer > tolerance * match.target_total:
        why = (f"one layer has {per_layer:,} parameters, {per_layer / match.target_total:.0%} of the total, so depth "
               f"moves in steps too coarse to match (the closest gives {match.params.total:,}); match by ffn instead")
    else:
        why = f"the closest {by} gives {match.params.total:,}"
    hint = "" if suggestion is None else (
        f"; a generator that fits: d_seed={suggestion.d_seed}, n_modes={suggestion.n_modes}, "
        f"n_knots={suggestion.n_knots}, rank={suggestion.rank} "
        f"({sum(generator_params(dense.vocab_size, dense.d_model, suggestion).values()):,} parameters)")
    name = "Leviathan" if repr == "leviathan" else f"{repr} model"
    raise MatchError(f"no isoparametric {name} (by {by}) comes within {tolerance:.0%} of the dense total "
                     f"{match.target_total:,}: {why} ({100 * match.relative_gap:+.0f}%){hint}", suggestion)


def suggest_generator(dense: ModelConfig, by: MatchBy = "depth", tolerance: float = MATCH_TOLERANCE,
                      share: float = PAPER_GENERATOR_SHARE) -> LeviathanConfig | None:
    """The largest generator of the paper's structure, at most ``share`` of the table it
    replaces (the paper's proportion), whose isoparametric match is within ``tolerance``."""
    lev = dense.leviathan
    budget = share * dense.vocab_size * dense.d_model
    best, best_size = None, -1
    for d_seed in (128, 64, 32, 16, 8, 4):
        for n_modes in (8, 4, 2, 1):
            for n_knots in (32, 16, 8):
                for rank in (64, 32, 16, 8, 4, 2, 1):
                    cand = replace(lev, d_seed=d_seed, n_modes=n_modes, n_knots=n_knots, rank=rank)
                    size = sum(generator_params(dense.vocab_size, dense.d_model, cand).values())
                    if size > budget or size <= best_size:
                        continue
                    m = _closest(dense.replace(leviathan=cand), by)
                    if abs(m.relative_gap) <= tolerance:
                        best, best_size = cand, size
    return best


def comparison(dense: ModelConfig, by: MatchBy = "depth", repr: str = "leviathan") -> dict[str, dict]:
    """The ``params`` report: dense (as given), dense tied, and the Leviathan matches.

    ``leviathan_isobody`` is measured against ``dense``; ``leviathan_backbone`` (the same
    Leviathan model) against ``dense_tied``, as the paper's revision compares;
    ``leviathan_isoparam`` is ``{"error": ..., "suggested_generator": ...}`` when no
    depth (width, SwiGLU width) comes within ``MATCH_TOLERANCE`` of the dense total.
    """
    tied, backbone = backbone_pair(dense, repr)
    dense_counts, tied_counts = count_params(dense), count_params(tied)
    out: dict[str, dict] = {"dense": dense_counts.to_dict(), "dense_tied": tied_counts.to_dict()}
    iso_body = count_params(isobody_match(dense, repr))
    out["leviathan_isobody"] = {**iso_body.to_dict(), "reference": "dense",
                                "relative_gap": (iso_body.total - dense_counts.total) / dense_counts.total}
    lev = count_params(backbone)
    out["leviathan_backbone"] = {**lev.to_dict(), "reference": "dense_tied",
                                 "relative_gap": (lev.total - tied_counts.total) / tied_counts.total}
    try:
        iso = isoparametric_match(dense, by, repr=repr)
    except MatchError as exc:
        out["leviathan_isoparam"] = {"error": str(exc), "matched_by": by, "suggested_generator":
                                     None if exc.suggestion is None else asdict(exc.suggestion)}
    else:
        out["leviathan_isoparam"] = {**iso.params.to_dict(), "reference": "dense", "relative_gap": iso.relative_gap,
                                     "matched_by": by}
        if by == "ffn":
            out["leviathan_isoparam"]["ffn_hidden"] = iso.config.ffn_dim
    out["dense"]["vocab_size"] = dense.vocab_size
    out["dense"]["tied"] = dense.tie_embeddings
    from .representations import stage_params

    out["representation"] = {"name": repr, "stages": stage_params(backbone)}
    return out
