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

import torch
import torch.nn.functional as F
from torch import nn

from .config import ConfigError, LeviathanConfig, require_int, integer_base


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


# ---- the B-spline basis --------------------------------------------------------------------

def _cardinal_quadratic(t: torch.Tensor) -> torch.Tensor:
    """Uniform quadratic B-spline of unit spacing centred at 0 (support |t| < 1.5)."""
    a = t.abs()
    inner = 0.75 - a * a
    outer = 0.5 * (1.5 - a).clamp_min(0.0) ** 2
    return torch.where(a <= 0.5, inner, outer)


def bspline_basis(u: torch.Tensor, n_knots: int) -> torch.Tensor:
    """Normalised quadratic B-spline basis on ``n_knots`` uniform centres over [0, 1].

    u: [...] in [0, 1] -> [..., n_knots], rows summing to 1 with at most 3 non-zeros.
    Centres are ``c_g = g / (n_knots - 1)``; near 0 and 1 the missing outer
    neighbour is compensated by dividing by the sum.
    """
    h = 1.0 / (n_knots - 1)
    centres = torch.arange(n_knots, device=u.device, dtype=torch.float32) * h
    t = (u.float().clamp(0.0, 1.0).unsqueeze(-1) - centres) / h  # [..., kappa]
    basis = _cardinal_quadratic(t)
    return basis / basis.sum(-1, keepdim=True)


def bspline_active(u: torch.Tensor, n_knots: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The (at most) three active basis functions of each coordinate: indices and weights.

    u: [...] -> (index [..., 3] int64, weight [..., 3] float32); equal to the non-zero
    entries of ``bspline_basis`` (out-of-range neighbours get weight 0, index clamped).
    """
    x = u.float().clamp(0.0, 1.0) * (n_knots - 1)
    g0 = torch.round(x)
    t0 = x - g0  # in [-0.5, 0.5]
    w = torch.stack([0.5 * (0.5 - t0) ** 2, 0.75 - t0 * t0, 0.5 * (0.5 + t0) ** 2], dim=-1)
    idx = g0.long().unsqueeze(-1) + torch.tensor([-1, 0, 1], device=u.device)
    valid = (idx >= 0) & (idx < n_knots)
    w = torch.where(valid, w, torch.zeros_like(w))
    w = w / w.sum(-1, keepdim=True)
    return idx.clamp(0, n_knots - 1), w


def signed_log_product(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``prod(x, dim)`` computed as sign parity times ``exp(sum log|x|)``.

    A direct product of 128 factors near 1 +- 0.1 over- or underflows float32;
    the log-magnitude sum does not until the result itself is unrepresentable.
    """
    logabs = x.abs().clamp_min(1e-30).log().sum(dim)
    negatives = (x < 0).sum(dim)
    sign = 1.0 - 2.0 * (negatives % 2).to(x.dtype)
    return sign * torch.exp(logabs)


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
        self.dedup = True  # evaluate once per distinct id, then gather
        self.impl = "auto"  # stage 3 path: "auto" | "reference" | "sparse" | "fused" | "triton"
        # eval mode without grad: look rows up in a cached table(); "auto": on GPUs, and on a
        # CPU for vocabularies up to TABLE_CACHE_CPU_MAX_VOCAB (a 200k-id table at the paper's
        # settings takes minutes on a CPU core)
        self.use_table_cache: bool | str = "auto"
        self._table_cache: torch.Tensor | None = None
        self._table_cache_key: tuple | None = None
        self.reset_parameters()

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
            from .kernels import fast_mode_features  # kernels imports this module
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
