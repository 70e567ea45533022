"""Training FLOPs, counted in one place. Two conventions, for two questions.

**Compute of a run** (``training_flops``: sweeps, scaling-law fits, the registry, the
dashboard's cost estimates)::

    flops = 6 * (body + head + generator) * tokens

the usual 6 N T estimate (forward 2 N T + backward 4 N T) over every parameter that
does arithmetic on each token: the non-embedding parameters, the output head and
the Leviathan generator. The input table is free (a lookup does no multiply-add),
so a dense model and its Leviathan are charged for what each one computes. The
generator term over-counts: it is evaluated once per distinct id of a batch, not once
per position. The parameter blocks come from ``params.count_params`` and so are the
same numbers ``summary.json`` records; the count needs nothing but them, which is
what a fit over finished runs has.

**Work of a benchmarked training step** (``matmul_params``, ``train_step_flops``,
``generator_flops_per_id``: ``leviathan-explore bench``, model FLOP utilisation)::

    flops = 6 * matmul_params * tokens + 12 * n_layers * d_model * seq_len * tokens

PaLM's count: every matrix product (each block's linear maps and the head; norms
and the table excluded) plus the attention scores and their weighted sum, which
grow with the sequence length (the causal mask is not discounted). MFU divides it by
a measured matmul rate, so it must count the attention work that the 6 N T rule
leaves out; the generator's own work is counted separately per distinct id
(``generator_flops_per_id``), as the benchmark's FLOP floor needs it.

The two differ by the attention term and by where the generator is counted; a fit
compares runs against each other on the first, a benchmark compares a step with the
hardware on the second. Neither is the other's approximation.
"""

from __future__ import annotations

from typing import Mapping

from .config import LeviathanConfig, ModelConfig
from .params import layer_params


def training_flops(params: Mapping[str, int], tokens: float) -> float:
    """6 x (body + head + generator) x tokens; the input table's lookups cost nothing.

    ``params``: a parameter breakdown (``count_params(cfg).to_dict()``, a summary's ``params``).
    A tied model has no separate head (``head == 0``): its table computes the logits, so the
    table counts as the head.
    """
    head = params["head"] if params["head"] else params.get("embedding", 0)
    return 6.0 * (params["body"] + head + params.get("generator", 0)) * float(tokens)


def matmul_params(cfg: ModelConfig) -> int:
    """Parameters used in matrix products per token: every block's linear maps and the head."""
    return cfg.n_layers * (layer_params(cfg) - 2 * cfg.d_model) + cfg.vocab_size * cfg.d_model


def train_step_flops(cfg: ModelConfig, tokens: int, seq_len: int) -> float:
    """6 x matmul params x tokens + attention 12 L D T per token (PaLM's count; causal mask not discounted)."""
    return 6.0 * matmul_params(cfg) * tokens + 12.0 * cfg.n_layers * cfg.d_model * seq_len * tokens


def generator_flops_per_id(d_model: int, lev: LeviathanConfig, reference: bool = False) -> float:
    """Forward FLOPs of the generator for one id (an estimate; x3 for forward + backward).

    Seed projection 2 M d^2 and its layer norm and sigmoid ~10 M d; stage 3 with three
    active basis functions 2*3 M d r plus ~3 M d r for the log-magnitude product
    (reference: the dense basis, 2 M d kappa r); projection 2 M r D.
    """
    M, d, r, kappa = lev.n_modes, lev.d_seed, lev.rank, lev.n_knots
    modes = (2 * kappa if reference else 6) * M * d * r + 3 * M * d * r
    return 2.0 * M * d * d + 10.0 * M * d + modes + 2.0 * M * r * d_model


__all__ = ["training_flops", "matmul_params", "train_step_flops", "generator_flops_per_id"]
