"""What the scaling plot draws, computed from a ``scaling.ScalingReport``.

The fits themselves are ``analysis.scaling``; this module only evaluates them on
a grid (the fitted curve, its bootstrap band, the loss a dense model 1.47x-2.11x
the size of each Leviathan run would reach) and tabulates the points, so that
``viz.scaling`` receives plain arrays and tables.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .interpretation import PAPER_MULTIPLIER_BAND as PAPER_MULTIPLIERS  # the paper's 1.47x-2.11x, defined once
from .scaling import BootstrapFit, PowerLaw, ScalingReport


def fit_curve(boot: BootstrapFit, x_min: float, x_max: float, n: int = 100) -> dict[str, np.ndarray]:
    """The fitted law on a log grid over [x_min, x_max] with its bootstrap percentile band."""
    if not (0 < x_min < x_max):
        raise ValueError(f"grid [{x_min}, {x_max}] must satisfy 0 < x_min < x_max")
    grid = np.geomspace(x_min, x_max, n)
    loss = boot.fit.predict(grid)
    if len(boot.samples):
        preds = np.stack([law.predict(grid) for law in boot.laws])  # [n_boot, n]
        lo, hi = np.quantile(preds, [(1 - boot.level) / 2, (1 + boot.level) / 2], axis=0)
    else:
        lo = hi = loss
    return {"params": grid, "loss": loss, "lo": lo, "hi": hi}


def paper_band(fit: PowerLaw, sizes: np.ndarray, n: int = 60,
               multipliers: tuple[float, float] = PAPER_MULTIPLIERS) -> dict[str, np.ndarray]:
    """Loss a dense model of ``multipliers[0]``..``[1]`` times the size reaches under ``fit``,
    on a grid spanning ``sizes`` (widened by 25% each way; one size gives a short band)."""
    sizes = np.asarray(sizes, dtype=float)
    if sizes.size == 0 or not np.all(sizes > 0):
        raise ValueError("the band needs at least one positive size")
    grid = np.geomspace(sizes.min() / 1.25, sizes.max() * 1.25, n)
    return {"params": grid, "lo": fit.predict(multipliers[1] * grid), "hi": fit.predict(multipliers[0] * grid)}


def scaling_view(report: ScalingReport) -> dict:
    """Everything the scaling tab draws: dense and Leviathan point tables, the fit curve and
    band over the dense sizes (extended to cover the Leviathan effective sizes) and the
    paper's multiplier band at the Leviathan sizes."""
    dense = pd.DataFrame({"name": [r["name"] for r in report.dense],
                          "params": [float(r["n_params"]) for r in report.dense],
                          "loss": [float(r["loss"]) for r in report.dense]})
    lev = pd.DataFrame({
        "name": [r.name for r in report.leviathan],
        "params": [float(r.n_params) for r in report.leviathan],
        "loss": [float(r.loss) for r in report.leviathan],
        "effective_params": [np.nan if r.n_eff is None else float(r.n_eff) for r in report.leviathan],
        "multiplier": [np.nan if r.multiplier is None else float(r.multiplier) for r in report.leviathan],
        "lo": [np.nan if r.multiplier_ci[0] is None else float(r.multiplier_ci[0]) for r in report.leviathan],
        "hi": [np.nan if r.multiplier_ci[1] is None else float(r.multiplier_ci[1]) for r in report.leviathan],
    })
    xs = np.concatenate([dense["params"].to_numpy(), lev["params"].to_numpy(),
                         lev["effective_params"].dropna().to_numpy()])
    xs = xs[np.isfinite(xs) & (xs > 0)]
    view = {"dense": dense, "leviathan": lev, "fit": fit_curve(report.dense_fit, xs.min() / 1.2, xs.max() * 1.2),
            "paper_band": paper_band(report.dense_fit.fit, lev["params"].to_numpy()) if len(lev) else None,
            "law": report.dense_fit.to_dict(), "warnings": list(report.warnings)}
    return view
