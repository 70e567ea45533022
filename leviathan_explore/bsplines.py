"""The generator's B-spline arithmetic, shared by the reference (generator.py) and every fast path
(kernels.py, modes_cpu.py): the normalised quadratic basis, its three active functions with their
closed-form slopes, and the sign-and-log-magnitude product.
"""

from __future__ import annotations

import torch

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


def active_weights_and_slopes(u: torch.Tensor, kappa: int):
    """u [n, M, d] -> (first row g0-1 clamped-free index [n, M, d] int32, w [n, M, d, 3], dw/du [n, M, d, 3]).

    Closed form of bspline_active and its derivative, for the Triton path: with
    x = u (kappa-1), t = x - round(x), raw weights (0.5(0.5-t)^2, 0.75-t^2, 0.5(0.5+t)^2)
    masked to valid indices, w = raw / sum(raw), dw/dx = (raw' - w sum(raw')) / sum(raw).
    """
    inside = (u >= 0) & (u <= 1)
    x = u.clamp(0.0, 1.0) * (kappa - 1)
    g0 = torch.round(x)
    t = x - g0
    raw = torch.stack([0.5 * (0.5 - t) ** 2, 0.75 - t * t, 0.5 * (0.5 + t) ** 2], dim=-1)
    slope = torch.stack([t - 0.5, -2.0 * t, 0.5 + t], dim=-1)
    idx = g0.long().unsqueeze(-1) + torch.tensor([-1, 0, 1], device=u.device)
    valid = (idx >= 0) & (idx < kappa)
    raw = torch.where(valid, raw, torch.zeros_like(raw))
    slope = torch.where(valid, slope, torch.zeros_like(slope))
    total = raw.sum(-1, keepdim=True)
    w = raw / total
    dw = (slope - w * slope.sum(-1, keepdim=True)) / total * (kappa - 1)
    dw = torch.where(inside.unsqueeze(-1), dw, torch.zeros_like(dw))  # clamp: no gradient outside [0, 1]
    return idx.clamp(0, kappa - 1), w, dw
