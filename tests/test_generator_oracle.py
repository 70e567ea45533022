"""A formula-level oracle for the reference generator.

Every fast path is checked against ``LeviathanGenerator.embed_ids``; this file checks
``embed_ids`` itself against the formulas of docs/method.md ("The generator"), evaluated
here in plain numpy float64 for a tiny configuration with fixed, hand-chosen weights:

1. ``b = min{b : b^k >= V}``; ``i = sum_j i_j b^(k-j)`` (digit 1 most significant);
   ``z = sum_j C_j[i_j]``
2. ``u_m = sigmoid(LN_m(W_m z) / 2)``, ``LN(h) = (h - mean h) / sqrt(var h + 1e-5) * gamma + beta``
   (biased variance)
3. ``B_g(u)``: the quadratic cardinal B-spline ``B(t) = 3/4 - t^2`` (``|t| <= 1/2``),
   ``(3/2 - |t|)^2 / 2`` (``1/2 < |t| < 3/2``), else 0, at ``t = (u - c_g) / h``,
   ``c_g = g h``, ``h = 1 / (kappa - 1)``, divided by ``sum_g B_g(u)``;
   ``phi_{m,d,rho} = sum_g B_g(u_{m,d}) (1 + Delta_m[d, g, rho])``, ``Psi_{m,rho} = prod_d phi_{m,d,rho}``
4. ``e = sum_m sum_rho Psi_{m,rho} W_out_m[rho, :]``

Changing any stage of the implementation (``sigmoid(h)`` for ``sigmoid(h / 2)``, no layer
norm, stage 4 divided by M, a digit order swapped...) makes these tests fail.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from leviathan_explore.config import LeviathanConfig
from leviathan_explore.generator import LeviathanGenerator, bspline_basis

V, K, D_SEED, M, KAPPA, R, D = 10, 2, 3, 2, 5, 2, 4   # b = 4: 4^2 = 16 >= 10 > 3^2
IDS = [0, 1, 3, 4, 7, 9]


def hand_weights() -> dict[str, np.ndarray]:
    """Fixed weights, chosen so that some factors phi are negative (the sign parity matters),
    the layer-norm scale and shift are not 1 and 0, and the coordinates u spread over (0, 1)."""
    def pattern(shape, scale, phase):
        n = int(np.prod(shape))
        return (scale * np.sin(np.arange(n) * 1.7 + phase)).reshape(shape)

    return {
        # plus a ramp: swapping the digit order changes z (sin alone makes C_1[a] + C_2[b] ~ C_1[b] + C_2[a])
        "codebooks": pattern((K, 4, D_SEED), 1.3, 0.1) + np.linspace(-1, 1, K * 4 * D_SEED).reshape(K, 4, D_SEED),
        "seed_proj": pattern((M, D_SEED, D_SEED), 0.9, 0.7),
        "ln_weight": 2.5 + pattern((M, D_SEED), 1.5, 1.3),
        "ln_bias": pattern((M, D_SEED), 0.8, 2.1),
        "spline_delta": pattern((M, D_SEED, KAPPA, R), 2.5, 0.3),
        "out_proj": pattern((M, R, D), 0.5, 2.9),
    }


def generator_with(weights: dict[str, np.ndarray]) -> LeviathanGenerator:
    gen = LeviathanGenerator(V, D, LeviathanConfig(k=K, d_seed=D_SEED, n_modes=M, n_knots=KAPPA, rank=R))
    gen.impl = "reference"
    with torch.no_grad():
        for name, value in weights.items():
            getattr(gen, name).copy_(torch.from_numpy(value).float())
    return gen.eval()


# ---- the formulas, in plain numpy ------------------------------------------------------------

def oracle_base(vocab: int, k: int) -> int:
    b = 1
    while b ** k < vocab:
        b += 1
    return b


def oracle_digits(i: int, b: int, k: int) -> list[int]:
    return [(i // b ** (k - 1 - j)) % b for j in range(k)]


def cardinal_quadratic(t: float) -> float:
    a = abs(t)
    if a <= 0.5:
        return 0.75 - a * a
    if a < 1.5:
        return 0.5 * (1.5 - a) ** 2
    return 0.0


def oracle_basis(u: float, kappa: int) -> np.ndarray:
    h = 1.0 / (kappa - 1)
    raw = np.array([cardinal_quadratic((u - g * h) / h) for g in range(kappa)])
    return raw / raw.sum()


def oracle_stages(i: int, w: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    b = oracle_base(V, K)
    digits = oracle_digits(i, b, K)
    z = sum(w["codebooks"][j, digits[j]] for j in range(K))                     # [d_seed]
    u = np.empty((M, D_SEED))
    for m in range(M):
        h = w["seed_proj"][m] @ z                                               # W_m z, W_m [out, in]
        ln = (h - h.mean()) / math.sqrt(h.var() + 1e-5) * w["ln_weight"][m] + w["ln_bias"][m]
        u[m] = 1.0 / (1.0 + np.exp(-ln / 2))
    basis = np.array([[oracle_basis(u[m, d], KAPPA) for d in range(D_SEED)] for m in range(M)])
    phi = np.einsum("mdg,mdgr->mdr", basis, 1.0 + w["spline_delta"])
    psi = phi.prod(axis=1)                                                      # [M, r]
    e = sum(psi[m] @ w["out_proj"][m] for m in range(M))                        # [D]
    return {"base": b, "digits": np.array(digits), "seed": z, "u": u, "basis": basis, "phi": phi,
            "psi": psi, "embedding": e}


# ---- the checks ------------------------------------------------------------------------------

def close(actual: torch.Tensor, expected: np.ndarray, what: str) -> None:
    np.testing.assert_allclose(actual.detach().double().numpy(), expected, rtol=2e-5, atol=2e-6, err_msg=what)


def test_the_weights_exercise_every_branch():
    w = hand_weights()
    stages = [oracle_stages(i, w) for i in IDS]
    phi = np.stack([s["phi"] for s in stages])
    u = np.stack([s["u"] for s in stages])
    assert (phi < 0).any() and (phi > 0).any()       # the sign parity of the product is exercised
    assert u.min() < 0.2 and u.max() > 0.8          # coordinates reach both ends of the grid
    assert oracle_base(V, K) == 4
    e = {i: s["embedding"] for i, s in zip(IDS, stages)}
    assert np.abs(e[1] - e[4]).max() > 0.05  # digits (0, 1) and (1, 0) give different embeddings


@pytest.mark.parametrize("i", IDS)
def test_every_stage_equals_the_formulas(i):
    w = hand_weights()
    want = oracle_stages(i, w)
    gen = generator_with(w)
    ids = torch.tensor([i])
    with torch.no_grad():
        assert gen.base == want["base"]
        assert gen.coordinates(ids)[0].tolist() == want["digits"].tolist()
        seed = gen.seed(ids)
        close(seed[0], want["seed"], "stage 1: seed z")
        u = gen.project_seed(seed)
        close(u[0], want["u"], "stage 2: u = sigmoid(LN(W z) / 2)")
        close(bspline_basis(u, KAPPA)[0], want["basis"], "stage 3: normalised B-spline basis")
        phi = gen.mode_factors(u)
        close(phi[0], want["phi"], "stage 3: factors phi")
        psi = gen.mode_features(u)
        close(psi[0], want["psi"], "stage 3: Psi = prod_d phi")
        close(gen.project_out(psi)[0], want["embedding"], "stage 4: e = sum_m Psi_m W_out_m")
        close(gen.embed_ids(ids)[0], want["embedding"], "embed_ids: the four stages")
        close(gen(ids)[0], want["embedding"], "forward (de-duplicated, table cache)")


def test_a_batch_of_ids_equals_the_formulas_row_by_row():
    w = hand_weights()
    gen = generator_with(w)
    with torch.no_grad():
        got = gen.embed_ids(torch.tensor(IDS))
        table = gen.table()
    close(got, np.stack([oracle_stages(i, w)["embedding"] for i in IDS]), "embed_ids on a batch")
    close(table, np.stack([oracle_stages(i, w)["embedding"] for i in range(V)]), "table(): every id")
