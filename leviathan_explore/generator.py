"""The Leviathan continuous embedding generator (docs/method.md, "The generator").

Token id ``i`` of a vocabulary of size ``V`` becomes a vector of width ``D`` in
four stages, each a short block in ``LeviathanGenerator``:

1. compositional coordinates: ``i`` written in base ``b = ceil(V^(1/k))``; one
   codebook per digit position; the seed ``z`` is the sum of the k rows;
2. seed projection per mode: ``u_m = sigmoid(LN_m(W_m z) / 2)`` in (0, 1);
3. separable B-spline modes: ``phi_{m,d,rho} = sum_g B_g(u_{m,d}) S_m[d,g,rho]``
   and ``Psi_{m,rho} = prod_d phi_{m,d,rho}`` (log-magnitude sum + sign parity);
4. projection: ``e(i) = sum_m Psi_m W_out_m``.

This module is the plain reference implementation: it materialises the dense
``kappa``-wide basis and is the oracle every fast path is checked against.
Internals always run in float32, also under bf16 autocast.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from .bsplines import bspline_active, bspline_basis, signed_log_product  # noqa: F401 - the method's public names
from .config import ConfigError, GeneratorExecution, LeviathanConfig, integer_base, require_int
from .kernels import fast_mode_features


class TokenIdError(ValueError):
    """Token ids outside the vocabulary (or of a non-integer dtype)."""


def check_token_ids(ids: torch.Tensor, vocab_size: int) -> None:
    """Raise ``TokenIdError`` unless ``ids`` is an integer tensor with values in [0, vocab_size)."""
    if not isinstance(ids, torch.Tensor):
        raise TokenIdError(f"token ids must be a torch.Tensor of integers, got {type(ids).__name__}")
    if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
        raise TokenIdError(f"token ids must have an integer dtype, got {ids.dtype}")
    if ids.numel() == 0:
        return
    if ids.dtype in (torch.uint16, torch.uint32, torch.uint64):  # min/max are not implemented for these
        ids = ids.long()  # uint64 above 2^63 wraps negative: still rejected
    lo, hi = int(ids.min()), int(ids.max())
    if lo < 0 or hi >= vocab_size:
        bad = lo if lo < 0 else hi
        raise TokenIdError(f"token id {bad} is outside the vocabulary [0, {vocab_size})")


# ---- the generator ---------------------------------------------------------------------------

TABLE_CACHE_CPU_MAX_VOCAB = 16_384  # use_table_cache="auto" on a CPU: about 3 s to build at CPU_GENERATOR


class LeviathanGenerator(nn.Module):
    """Continuous token embedding: ids [...] -> embeddings [..., d_model] (float32)."""

    def __init__(self, vocab_size: int, d_model: int, cfg: LeviathanConfig | None = None):
        super().__init__()
        if cfg is not None and not isinstance(cfg, LeviathanConfig):
            raise ConfigError("leviathan", cfg, "must be a LeviathanConfig")
        require_int("d_model", d_model, 1)
        cfg = (cfg or LeviathanConfig()).validate()
        self.cfg = cfg
        self.vocab_size = vocab_size
        self.d_model = d_model
        self.base = integer_base(vocab_size, cfg.k)
        k, b, ds, M, kappa, r = cfg.k, self.base, cfg.d_seed, cfg.n_modes, cfg.n_knots, cfg.rank
        # place values b^(k-1), ..., b^0: digit 1 is the most significant
        self.register_buffer("place_values", torch.tensor([b ** (k - 1 - j) for j in range(k)]),
                             persistent=False)
        self.codebooks = nn.Parameter(torch.empty(k, b, ds))            # C_j: [k, b, d_seed]
        self.seed_proj = nn.Parameter(torch.empty(M, ds, ds))           # W_m: [M, out, in]
        self.ln_weight = nn.Parameter(torch.ones(M, ds))
        self.ln_bias = nn.Parameter(torch.zeros(M, ds))
        self.spline_delta = nn.Parameter(torch.empty(M, ds, kappa, r))  # S_m = 1 + Delta_m
        self.out_proj = nn.Parameter(torch.empty(M, r, d_model))        # W_out_m: [M, r, D]
        self.execution = GeneratorExecution()  # how it computes: config.GeneratorExecution
        self._table_cache: torch.Tensor | None = None
        self._table_cache_key: tuple | None = None
        self.reset_parameters()

    @staticmethod
    def stage_params(vocab_size: int, d_model: int, cfg: LeviathanConfig) -> dict[str, int]:
        """Parameters of each stage, from the sizes alone (the shapes above; ``params`` counts them)."""
        b = integer_base(vocab_size, cfg.k)
        ds, M = cfg.d_seed, cfg.n_modes
        return {
            "codebooks": cfg.k * b * ds,
            "seed_projection": M * (ds * ds + 2 * ds),  # dense map + layer-norm scale and shift
            "spline_coefficients": M * ds * cfg.n_knots * cfg.rank,
            "output_projection": M * cfg.rank * d_model,
        }

    # ---- execution settings (declared in config.GeneratorExecution, validated on assignment) ----
    @property
    def execution(self) -> GeneratorExecution:
        return self._execution

    @execution.setter
    def execution(self, value: GeneratorExecution) -> None:
        if not isinstance(value, GeneratorExecution):
            raise ConfigError("execution", value, "must be a GeneratorExecution")
        self._execution = value.validate()

    @property
    def impl(self) -> str:
        return self._execution.impl

    @impl.setter
    def impl(self, value: str) -> None:
        self.execution = replace(self._execution, impl=value)

    @property
    def dedup(self) -> bool:
        return self._execution.dedup

    @dedup.setter
    def dedup(self, value: bool) -> None:
        self.execution = replace(self._execution, dedup=value)

    @property
    def use_table_cache(self) -> bool | str:
        return self._execution.table_cache

    @use_table_cache.setter
    def use_table_cache(self, value: bool | str) -> None:
        self.execution = replace(self._execution, table_cache=value)

    def reset_parameters(self) -> None:
        c = self.cfg
        with torch.no_grad():
            nn.init.normal_(self.codebooks, 0.0, c.codebook_init_std)
            nn.init.normal_(self.seed_proj, 0.0, c.seed_proj_init_std or c.d_seed ** -0.5)
            self.ln_weight.fill_(1.0)
            self.ln_bias.zero_()
            nn.init.normal_(self.spline_delta, 0.0, c.delta_init_std)
            # e sums M*r features: 1/sqrt(M r) keeps its scale independent of M and r (with the
            # default spline scale Psi is far from 1, so e starts ~5-10x out_init_std, not at it)
            nn.init.normal_(self.out_proj, 0.0, c.out_init_std / math.sqrt(c.n_modes * c.rank))

    # ---- stage 1: compositional coordinates and seed ----------------------------------
    def coordinates(self, ids: torch.Tensor) -> torch.Tensor:
        """ids [...] -> base-b digits [..., k], most significant first."""
        check_token_ids(ids, self.vocab_size)
        return self._digits(ids)

    def _digits(self, ids: torch.Tensor) -> torch.Tensor:
        return (ids.long().unsqueeze(-1) // self.place_values) % self.base

    def seed(self, ids: torch.Tensor) -> torch.Tensor:
        """ids [...] -> z [..., d_seed] = sum_j C_j[i_j]."""
        check_token_ids(ids, self.vocab_size)
        return self._seed(ids)

    def _seed(self, ids: torch.Tensor) -> torch.Tensor:
        digits = self._digits(ids)                                       # [..., k]
        positions = torch.arange(self.cfg.k, device=digits.device)
        return self.codebooks.float()[positions, digits].sum(-2)         # [..., d_seed]

    # ---- stage 2: per-mode projection, layer norm, sigmoid ---------------------------
    def project_seed(self, z: torch.Tensor) -> torch.Tensor:
        """z [..., d_seed] -> u [..., M, d_seed] in (0, 1)."""
        h = torch.einsum("...i,moi->...mo", z.float(), self.seed_proj.float())
        if self.cfg.layer_norm:  # off only in the no-layer-norm ablation (scale and shift stay)
            h = F.layer_norm(h, (self.cfg.d_seed,), eps=1e-5)
        h = h * self.ln_weight.float() + self.ln_bias.float()
        return torch.sigmoid(h / 2)

    def mode_inputs(self, ids: torch.Tensor) -> torch.Tensor:
        """ids [...] -> the sigmoid coordinates u [..., M, d_seed]."""
        with torch.autocast(device_type=ids.device.type, enabled=False):
            return self.project_seed(self.seed(ids).float())

    # ---- stage 3: separable B-spline modes --------------------------------------------
    def mode_features(self, u: torch.Tensor) -> torch.Tensor:
        """u [..., M, d_seed] -> Psi [..., M, r] = prod_d sum_g B_g(u_d) S[d, g, :].

        ``self.impl`` chooses the path: "reference" (below, the oracle) or a fast path
        of ``kernels.py`` ("sparse", "fused", "triton"); "auto" is the fastest on u's device.
        """
        if self.impl != "reference":
            return fast_mode_features(u, self.spline_delta, self.impl)
        return signed_log_product(self.mode_factors(u), dim=-2)          # [..., M, r]

    def mode_factors(self, u: torch.Tensor) -> torch.Tensor:
        """u [..., M, d_seed] -> phi [..., M, d_seed, r] = sum_g B_g(u_d) S[d, g, :], S = 1 + Delta:
        the d_seed factors whose product over d is the mode feature Psi (reference, dense basis)."""
        basis = bspline_basis(u, self.cfg.n_knots)                       # [..., M, d, kappa]
        coeff = 1.0 + self.spline_delta.float()                          # [M, d, kappa, r]
        return torch.einsum("...mdg,mdgr->...mdr", basis, coeff)         # [..., M, d, r]

    # ---- stage 4: projection ---------------------------------------------------------
    def project_out(self, psi: torch.Tensor) -> torch.Tensor:
        """Psi [..., M, r] -> e [..., D] = sum_m Psi_m W_out_m."""
        return torch.einsum("...mr,mrd->...d", psi, self.out_proj.float())

    def embed_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """The four stages for every entry of ``ids`` (no de-duplication)."""
        u = self.project_seed(self._seed(ids))
        return self.project_out(self.mode_features(u))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        check_token_ids(ids, self.vocab_size)
        if not self.training and not torch.is_grad_enabled() and self._table_cache_on(ids.device):
            return self.cached_table()[ids.long()]
        with torch.autocast(device_type=ids.device.type, enabled=False):
            if not self.dedup:
                return self.embed_ids(ids)
            # Each distinct id once; gradients of repeated ids accumulate through the gather.
            uniq, inverse = torch.unique(ids.reshape(-1), return_inverse=True)
            return self.embed_ids(uniq)[inverse].reshape(*ids.shape, self.d_model)

    @torch.no_grad()
    def table(self, chunk_size: int = 2048) -> torch.Tensor:
        """The whole generated vocabulary [V, D] in float32, computed ``chunk_size`` ids at a time."""
        device = self.codebooks.device
        out = torch.empty(self.vocab_size, self.d_model, dtype=torch.float32, device=device)
        with torch.autocast(device_type=device.type, enabled=False):
            for start in range(0, self.vocab_size, chunk_size):
                ids = torch.arange(start, min(start + chunk_size, self.vocab_size), device=device)
                out[start:start + len(ids)] = self.embed_ids(ids)
        return out

    # ---- the table cache (inference) --------------------------------------------------
    def _table_cache_on(self, device: torch.device) -> bool:
        if self.use_table_cache == "auto":
            return device.type != "cpu" or self.vocab_size <= TABLE_CACHE_CPU_MAX_VOCAB
        return bool(self.use_table_cache)

    def _parameter_state(self) -> tuple:
        # p._version counts in-place changes (optimizer steps, load_state_dict, init);
        # data_ptr catches replaced storage (.to(), p.data = ...). Writes through p.data are not seen.
        return tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in self.parameters())

    def cached_table(self) -> torch.Tensor:
        """``table()``, computed once and reused until a parameter changes or ``train()`` is called."""
        state = self._parameter_state()
        if self._table_cache is None or self._table_cache_key != state:
            self._table_cache = None  # free the stale table before building the new one
            self._table_cache = self.table()
            self._table_cache_key = state
        return self._table_cache

    def invalidate_table_cache(self) -> None:
        """Drop the cached table (needed only after writing parameters through ``p.data``)."""
        self._table_cache = None
        self._table_cache_key = None

    def train(self, mode: bool = True) -> "LeviathanGenerator":
        self.invalidate_table_cache()
        return super().train(mode)

    def extra_repr(self) -> str:
        c = self.cfg
        return (f"vocab_size={self.vocab_size}, d_model={self.d_model}, k={c.k}, base={self.base}, "
                f"d_seed={c.d_seed}, n_modes={c.n_modes}, n_knots={c.n_knots}, rank={c.rank}")
