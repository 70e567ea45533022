"""Scaling-law fits on dense runs, and the effective size of Leviathan runs.

Two laws of loss against size ``x`` (total parameters ``N``, or training FLOPs ``C``):

* saturating:  ``L(x) = E + A * x**(-alpha)``, fitted by non-linear least squares on
  log-loss residuals ``log L(x_i) - log L_i`` (``scipy.optimize.least_squares``,
  bounds ``0 <= E < min L_i``, ``0 < alpha <= 10``, several starts);
* pure:        ``L(x) = A * x**(-alpha)``, a straight line in log-log (``E = 0``).

Uncertainty is a bootstrap over runs: resample the dense runs with replacement,
refit, and take percentiles (a fixed ``seed`` makes it deterministic). A resample
with fewer distinct sizes than the law has parameters cannot be fitted and is
counted in ``n_failed``.

Effective parameters (docs/method.md): a Leviathan run with loss ``L`` behaves like a
dense model of size ``N_eff = ((L - E) / A) ** (-1 / alpha)``; the multiplier is
``N_eff / N``. When ``L <= E`` no dense model of any size reaches it under the
fit: that is "beyond the fitted range", never a number. In a bootstrap sample it
counts as ``N_eff = inf``, so an interval whose upper end reaches that region is
unbounded (``None`` in JSON). The compute version does the same with ``L(C)``
fitted on the dense runs' FLOPs (``registry.training_flops``).

A second view of the same uncertainty is leave one out (``fit_sensitivity``): refit the
law without each dense run in turn and recompute every multiplier.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Sequence

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from ..files import json_safe

LawKind = Literal["saturating", "pure"]
N_PARAMS = {"saturating": 3, "pure": 2}
LAW_TEXT = {"saturating": "L = E + A * x^(-alpha)", "pure": "L = A * x^(-alpha)"}


class ScalingFitError(ValueError):
    """A fit that cannot be made from the given runs; the message says why."""


class BeyondFittedRange(ValueError):
    """The loss is at or below the fitted floor E: no dense size reaches it under the fit."""


@dataclass(frozen=True)
class PowerLaw:
    """A fitted law ``L(x) = E + A * x**(-alpha)`` (``E = 0`` for the pure law)."""

    E: float
    A: float
    alpha: float
    kind: LawKind = "saturating"
    x_name: str = "params"
    n_points: int = 0
    x_min: float = float("nan")
    x_max: float = float("nan")
    rms_log_residual: float = float("nan")

    def predict(self, x: Any) -> np.ndarray:
        return self.E + self.A * np.power(np.asarray(x, dtype=float), -self.alpha)

    def invert(self, loss: float) -> float:
        """The size ``x`` with ``L(x) = loss``; ``BeyondFittedRange`` when ``loss <= E``."""
        loss = float(loss)
        if not math.isfinite(loss) or loss <= 0:
            raise ValueError(f"loss={loss!r} is invalid: must be a positive finite number")
        if loss <= self.E:
            raise BeyondFittedRange(
                f"loss {loss:.4f} is at or below the fitted floor E={self.E:.4f}: beyond the fitted range")
        # x = ((L - E) / A) ** (-1/alpha), computed in logs to avoid overflow.
        log_x = -(math.log(loss - self.E) - math.log(self.A)) / self.alpha
        return math.exp(log_x) if log_x < 709 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def effective_params(fit: PowerLaw, loss: float) -> float:
    """The dense size that reaches ``loss`` under ``fit`` (raises ``BeyondFittedRange`` if ``loss <= E``)."""
    return fit.invert(loss)


# ---- fitting --------------------------------------------------------------------------------

def _check_points(x: Any, loss: Any, kind: LawKind) -> tuple[np.ndarray, np.ndarray]:
    if kind not in N_PARAMS:
        raise ValueError(f"kind={kind!r} is invalid: must be 'saturating' or 'pure'")
    x = np.asarray(x, dtype=float).ravel()
    loss = np.asarray(loss, dtype=float).ravel()
    if x.shape != loss.shape:
        raise ScalingFitError(f"{x.size} sizes but {loss.size} losses: one loss per size is needed")
    if not (np.all(np.isfinite(x)) and np.all(x > 0)):
        raise ScalingFitError(f"sizes must be positive and finite, got {x.tolist()}")
    if not (np.all(np.isfinite(loss)) and np.all(loss > 0)):
        raise ScalingFitError(f"losses must be positive and finite, got {loss.tolist()}")
    need = N_PARAMS[kind]
    distinct = np.unique(x).size
    if distinct < need:
        raise ScalingFitError(
            f"{distinct} distinct dense size(s) ({x.size} run(s)): the law {LAW_TEXT[kind]} has {need} "
            f"parameters and needs at least {need} dense runs of distinct sizes")
    return x, loss


def _pure_fit(x: np.ndarray, loss: np.ndarray) -> tuple[float, float, float]:
    slope, intercept = np.polyfit(np.log(x), np.log(loss), 1)
    return 0.0, float(math.exp(intercept)), float(-slope)


def _saturating_fit(x: np.ndarray, loss: np.ndarray, starts: Sequence[np.ndarray] | None = None,
                    quick_start: np.ndarray | None = None, tol: float = 1e-10,
                    max_nfev: int = 500) -> tuple[float, float, float, float]:
    """(E, A, alpha, cost). Internally ``L = E + exp(a) * (x / x0)**(-alpha)`` with x0 the geometric mean.

    ``quick_start`` (bootstrap refits): first try unbounded Levenberg-Marquardt from it, five
    times faster than the bounded solver; its answer is kept only if it lies inside the bounds.
    """
    log_x0 = float(np.mean(np.log(x)))
    log_xn = np.log(x) - log_x0
    log_loss = np.log(loss)
    l_min = float(loss.min())
    e_hi = l_min * (1 - 1e-9)

    def residuals(theta: np.ndarray) -> np.ndarray:
        e, a, alpha = theta
        return np.log(e + np.exp(a - alpha * log_xn)) - log_loss

    def jacobian(theta: np.ndarray) -> np.ndarray:
        e, a, alpha = theta
        q = np.exp(a - alpha * log_xn)
        p = e + q
        return np.stack([1 / p, q / p, -log_xn * q / p], axis=1)

    if starts is None:
        starts = []
        for frac in (0.0, 0.5, 0.9):
            e0 = frac * l_min
            slope, intercept = np.polyfit(log_xn, np.log(loss - e0), 1)
            alpha0 = float(np.clip(-slope, 0.02, 5.0))
            starts.append(np.array([e0, intercept, alpha0]))
            for alpha_alt in (0.1, 0.5, 1.5):
                a_alt = float(np.mean(np.log(np.maximum(loss - e0, 1e-12)) + alpha_alt * log_xn))
                starts.append(np.array([e0, a_alt, alpha_alt]))
    lower = np.array([0.0, -50.0, 1e-4])
    upper = np.array([e_hi, 50.0, 10.0])
    best = None
    if quick_start is not None:
        try:
            res = least_squares(residuals, np.asarray(quick_start, dtype=float), jac=jacobian, method="lm",
                                xtol=tol, ftol=tol, gtol=tol, max_nfev=100)
            if res.success and np.all(np.isfinite(res.x)) and np.all(res.x >= lower) and np.all(res.x <= upper):
                best = res
                starts = []
        except (ValueError, FloatingPointError):
            pass
    for theta0 in starts:
        theta0 = np.clip(np.asarray(theta0, dtype=float), lower + 1e-12, upper - 1e-12)
        try:
            res = least_squares(residuals, theta0, jac=jacobian, bounds=(lower, upper), method="trf",
                                x_scale="jac", xtol=tol, ftol=tol, gtol=tol, max_nfev=max_nfev)
        except (ValueError, FloatingPointError):
            continue
        if np.all(np.isfinite(res.x)) and (best is None or res.cost < best.cost):
            best = res
    if best is None:
        raise ScalingFitError("the saturating power-law fit did not converge from any starting point")
    e, a, alpha = (float(v) for v in best.x)
    # Back to original units: A = exp(a) * x0**alpha, kept in logs until the end.
    log_A = a + alpha * log_x0
    return e, math.exp(min(log_A, 700.0)), alpha, float(best.cost)


def fit_power_law(x: Any, loss: Any, *, kind: LawKind = "saturating", x_name: str = "params") -> PowerLaw:
    """Fit ``L(x)`` to points ``(x_i, loss_i)``; raises ``ScalingFitError`` when it cannot be made."""
    x, loss = _check_points(x, loss, kind)
    if kind == "pure":
        E, A, alpha = _pure_fit(x, loss)
    else:
        E, A, alpha, _ = _saturating_fit(x, loss)
    law = PowerLaw(E, A, alpha, kind, x_name, int(x.size), float(x.min()), float(x.max()))
    resid = np.log(law.predict(x)) - np.log(loss)
    return PowerLaw(E, A, alpha, kind, x_name, int(x.size), float(x.min()), float(x.max()),
                    float(np.sqrt(np.mean(resid**2))))


# ---- bootstrap ------------------------------------------------------------------------------

def percentile_interval(values: Any, level: float) -> tuple[float, float]:
    """Equal-tailed percentile interval of ``values`` (which may hold ``+inf``: unbounded)."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    big = 1e300
    vv = np.where(np.isinf(v), big, v)
    lo, hi = np.quantile(vv, [(1 - level) / 2, (1 + level) / 2])
    return (float("inf") if lo >= 1e299 else float(lo)), (float("inf") if hi >= 1e299 else float(hi))


@dataclass
class BootstrapFit:
    """A fit on all runs plus refits on resampled runs; ``samples[:, 0:3]`` are E, A, alpha."""

    fit: PowerLaw
    samples: np.ndarray
    level: float
    n_boot: int
    n_failed: int
    seed: int

    @property
    def laws(self) -> list[PowerLaw]:
        f = self.fit
        return [PowerLaw(e, a, al, f.kind, f.x_name) for e, a, al in self.samples]

    def ci(self, name: str) -> tuple[float, float]:
        col = {"E": 0, "A": 1, "alpha": 2}[name]
        if self.samples.size == 0:
            return float("nan"), float("nan")
        return percentile_interval(self.samples[:, col], self.level)

    def to_dict(self) -> dict[str, Any]:
        f = self.fit
        out: dict[str, Any] = {"law": LAW_TEXT[f.kind], "kind": f.kind, "x": f.x_name}
        for name in ("E", "A", "alpha"):
            out[name] = {"value": getattr(f, name), "ci": [_json_num(v) for v in self.ci(name)]}
        out.update(n_points=f.n_points, x_min=f.x_min, x_max=f.x_max, rms_log_residual=f.rms_log_residual,
                   level=self.level, n_boot=self.n_boot, n_failed=self.n_failed, seed=self.seed)
        return out

    def effective_size_samples(self, loss: float) -> np.ndarray:
        """``x_eff`` under each bootstrap law (``inf`` where ``loss <= E``)."""
        out = np.empty(len(self.samples))
        for i, (e, a, al) in enumerate(self.samples):
            out[i] = float("inf") if loss <= e else math.exp(min(-(math.log(loss - e) - math.log(a)) / al, 709.0))
        return out


def _refit(xs: np.ndarray, ls: np.ndarray, fit: PowerLaw, need: int) -> tuple[float, float, float] | None:
    """One bootstrap refit; ``None`` when the resample cannot be fitted."""
    if np.unique(xs).size < need:
        return None
    if fit.kind == "pure":
        return _pure_fit(xs, ls)
    # Warm start from the full fit (in this resample's normalised units) and one cold start.
    log_x0 = float(np.mean(np.log(xs)))
    e0 = min(fit.E, float(ls.min()) * 0.999)
    a0 = math.log(fit.A) - fit.alpha * log_x0
    cold_e = 0.5 * float(ls.min())
    slope, intercept = np.polyfit(np.log(xs) - log_x0, np.log(ls - cold_e), 1)
    starts = [np.array([e0, a0, fit.alpha]), np.array([cold_e, intercept, float(np.clip(-slope, 0.02, 5))])]
    starts = starts[1:] if fit.E < 1e-6 * float(ls.min()) else starts  # a floor at 0: the warm start is degenerate
    try:
        # Looser than the main fit: a degenerate resample (a flat curve) otherwise crawls to max_nfev.
        e, a, al, _ = _saturating_fit(xs, ls, starts, quick_start=starts[0], tol=1e-8, max_nfev=200)
    except ScalingFitError:
        return None
    return e, a, al


def bootstrap_power_law(x: Any, loss: Any, *, kind: LawKind = "saturating", x_name: str = "params",
                        n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> BootstrapFit:
    """``fit_power_law`` plus ``n_boot`` refits on runs resampled with replacement."""
    if not (isinstance(n_boot, int) and n_boot >= 1):
        raise ValueError(f"n_boot={n_boot!r} is invalid: must be an integer >= 1")
    if not (0 < level < 1):
        raise ValueError(f"level={level!r} is invalid: must be in (0, 1)")
    x_arr, loss_arr = _check_points(x, loss, kind)
    fit = fit_power_law(x_arr, loss_arr, kind=kind, x_name=x_name)
    rng = np.random.default_rng(seed)
    need = N_PARAMS[kind]
    samples, failed = [], 0
    # A resample is a multiset of runs: fit each distinct one once (few exist for few runs).
    cache: dict[tuple[int, ...], tuple[float, float, float] | None] = {}
    for _ in range(n_boot):
        idx = np.sort(rng.integers(0, x_arr.size, x_arr.size))
        key = tuple(idx.tolist())
        if key not in cache:
            cache[key] = _refit(x_arr[idx], loss_arr[idx], fit, need)
        if cache[key] is None:
            failed += 1
        else:
            samples.append(cache[key])
    arr = np.array(samples, dtype=float).reshape(-1, 3)
    return BootstrapFit(fit, arr, level, n_boot, failed, seed)


# ---- effective size of Leviathan runs -------------------------------------------------------

def _json_num(v: float | None) -> float | None:
    """JSON has no infinity: an unbounded end or an undefined value is ``None``."""
    if v is None or not math.isfinite(v):
        return None
    return float(v)


@dataclass
class EffectiveSize:
    """One Leviathan run measured against the dense fits."""

    name: str
    match: str | None
    match_by: str | None
    n_params: int
    flops: float
    loss: float
    dense_loss_at_n: float          # the dense fit's loss at this run's size
    n_eff: float | None             # None: beyond the fitted range
    multiplier: float | None        # n_eff / n_params
    multiplier_ci: tuple[float | None, float | None]   # None: unbounded (or no bootstrap fit)
    beyond_fraction: float          # share of bootstrap fits under which loss <= E
    extrapolated: bool              # n_eff outside the dense sizes that were fitted
    c_eff: float | None             # dense training FLOPs reaching the same loss
    compute_multiplier: float | None
    compute_multiplier_ci: tuple[float | None, float | None]
    matched_dense: str | None = None        # the dense run of (nearly) equal total size, if any
    matched_dense_loss: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("n_eff", "multiplier", "c_eff", "compute_multiplier", "dense_loss_at_n"):
            d[k] = _json_num(d[k])
        d["multiplier_ci"] = [_json_num(v) for v in self.multiplier_ci]
        d["compute_multiplier_ci"] = [_json_num(v) for v in self.compute_multiplier_ci]
        d["beyond_fitted_range"] = self.n_eff is None
        return d


def _effective(boot: BootstrapFit, loss: float, size: float) -> tuple[float | None, float | None,
                                                                      tuple[float | None, float | None], float]:
    try:
        x_eff = boot.fit.invert(loss)
        mult = x_eff / size
    except BeyondFittedRange:
        x_eff = mult = None
    samples = boot.effective_size_samples(loss) / size
    lo, hi = (None if v is None or not math.isfinite(v) else v for v in percentile_interval(samples, boot.level))
    beyond = float(np.mean(np.isinf(samples))) if samples.size else float("nan")
    return x_eff, mult, (lo, hi), beyond


@dataclass
class ScalingReport:
    """Everything ``leviathan-explore fit`` prints: the dense laws and each Leviathan run's effective size."""

    dense_fit: BootstrapFit           # L(N), saturating
    pure_fit: BootstrapFit            # L(N), pure power law
    compute_fit: BootstrapFit | None  # L(C), saturating (None when it cannot be made)
    dense: list[dict[str, Any]]
    leviathan: list[EffectiveSize]
    x: str = "total"
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Strict-JSON-ready: NaN and infinities become None."""
        return json_safe({
            "x": self.x,
            "dense_fit": self.dense_fit.to_dict(),
            "pure_fit": self.pure_fit.to_dict(),
            "compute_fit": self.compute_fit.to_dict() if self.compute_fit else None,
            "dense": self.dense,
            "leviathan": [r.to_dict() for r in self.leviathan],
            "warnings": self.warnings,
        })


def analyze_runs(runs, *, x: str = "total", n_boot: int = 1000, seed: int = 0, level: float = 0.95,
                 match_tolerance: float = 0.02) -> ScalingReport:
    """Fit the dense runs of a registry table (``registry.load_runs``) and measure the Leviathan runs.

    ``x`` is the parameter column the laws use (``"total"``, the paper's choice, or
    ``"non_embedding"``). A Leviathan run's ``matched_dense`` is the dense run of the same
    sweep ``size``, else the dense run whose total is within ``match_tolerance`` of its own.
    """
    if x not in ("total", "non_embedding"):
        raise ValueError(f"x={x!r} is invalid: must be 'total' or 'non_embedding'")
    if len(runs) == 0:
        raise ScalingFitError("no runs to fit")
    from ..config import TOKEN_REPRS

    archs = {"dense", *(r for r in TOKEN_REPRS if r != "table")}
    bad_arch = sorted(set(runs["arch"]) - archs)
    if bad_arch:
        raise ScalingFitError(f"arch={bad_arch[0]!r} is not one of {sorted(archs)} (run "
                              f"{runs[runs['arch'] == bad_arch[0]]['name'].iloc[0]})")
    tied = runs["tied"].fillna(False).astype(bool) if "tied" in runs else pd.Series(False, index=runs.index)
    # The law is the untied dense family's (the paper's); tied dense runs are backbone references.
    dense = runs[(runs["arch"] == "dense") & ~tied].sort_values(x)
    dense_tied = runs[(runs["arch"] == "dense") & tied]
    lev = runs[runs["arch"] != "dense"].sort_values(["match", x], na_position="first")
    warnings = []
    hashes = {h for h in runs["data_content_hash"] if isinstance(h, str)}
    if len(hashes) > 1:
        warnings.append(f"runs were trained on {len(hashes)} different data sets (content hashes differ)")
    unfinished = runs[~runs["finished"].astype(bool)]["name"].tolist()
    if unfinished:
        warnings.append(f"unfinished runs included: {', '.join(unfinished)}")
    if len(dense) < N_PARAMS["saturating"]:
        raise ScalingFitError(
            f"{len(dense)} dense run(s): the law L = E + A * N^(-alpha) has 3 parameters and needs "
            f"at least 3 dense runs of distinct sizes")
    n, loss = dense[x].to_numpy(float), dense["final_val_loss"].to_numpy(float)
    dense_fit = bootstrap_power_law(n, loss, kind="saturating", x_name=x, n_boot=n_boot, seed=seed, level=level)
    pure_fit = bootstrap_power_law(n, loss, kind="pure", x_name=x, n_boot=n_boot, seed=seed, level=level)
    try:
        compute_fit = bootstrap_power_law(dense["flops"].to_numpy(float), loss, kind="saturating",
                                          x_name="flops", n_boot=n_boot, seed=seed, level=level)
    except ScalingFitError as exc:
        compute_fit = None
        warnings.append(f"no compute fit: {exc}")
    rows = []
    for _, r in lev.iterrows():
        size, run_loss = float(r[x]), float(r["final_val_loss"])
        n_eff, mult, mult_ci, beyond = _effective(dense_fit, run_loss, size)
        if compute_fit is not None:
            c_eff, c_mult, c_ci, _ = _effective(compute_fit, run_loss, float(r["flops"]))
        else:
            c_eff, c_mult, c_ci = None, None, (None, None)
        partners = dense_tied if r["match"] == "backbone" and len(dense_tied) else dense
        same_size = partners[partners["size"] == r["size"]] if isinstance(r.get("size"), str) else partners.iloc[:0]
        gaps = (partners[x] - size).abs() / size
        if len(same_size) == 1:
            matched = same_size.iloc[0]
        else:
            matched = partners.loc[gaps.idxmin()] if len(gaps) and gaps.min() <= match_tolerance else None
        rows.append(EffectiveSize(
            name=r["name"], match=r["match"], match_by=r["match_by"], n_params=int(r[x]),
            flops=float(r["flops"]), loss=run_loss, dense_loss_at_n=float(dense_fit.fit.predict(size)),
            n_eff=n_eff, multiplier=mult, multiplier_ci=mult_ci, beyond_fraction=beyond,
            extrapolated=bool(n_eff is not None and not (dense_fit.fit.x_min <= n_eff <= dense_fit.fit.x_max)),
            c_eff=c_eff, compute_multiplier=c_mult, compute_multiplier_ci=c_ci,
            matched_dense=None if matched is None else matched["name"],
            matched_dense_loss=None if matched is None else float(matched["final_val_loss"]),
        ))
    dense_rows = [{"name": r["name"], "n_params": int(r[x]), "flops": float(r["flops"]),
                   "loss": float(r["final_val_loss"]), "lr": r["lr"]} for _, r in dense.iterrows()]
    return ScalingReport(dense_fit, pure_fit, compute_fit, dense_rows, rows, x, warnings)


# ---- leave one out: how far the fit and the multipliers depend on each dense run ------------

def fit_sensitivity(runs: pd.DataFrame, *, x: str = "total", kind: str = "saturating") -> pd.DataFrame:
    """How the dense law and each Leviathan multiplier change with the dense runs included.

    runs: a registry table (``registry.load_runs`` / ``load_for_fit``) with columns
    name, arch, ``x`` and final_val_loss. The law is refitted on all dense runs and
    then once without each dense run in turn (leave one out). Returns one row per
    (fit, Leviathan run) with columns fit ("all" or "without NAME"), omitted,
    n_points, E, A, alpha, run, n_params, loss, n_eff and multiplier (n_eff / n_params;
    NaN where the run's loss is at or below the fit's floor E, i.e. beyond the fitted
    range, or where that subset cannot be fitted: then ``error`` says why).
    """
    missing = sorted({"name", "arch", x, "final_val_loss"} - set(runs.columns))
    if missing:
        raise ValueError(f"runs table lacks column {missing[0]!r}: pass a registry.load_runs table")
    tied = runs["tied"].fillna(False).astype(bool) if "tied" in runs else pd.Series(False, index=runs.index)
    dense = runs[(runs["arch"] == "dense") & ~tied].sort_values(x)  # the law is the untied family's
    lev = runs[runs["arch"] != "dense"].sort_values(x)
    if len(dense) == 0:
        raise ScalingFitError("no dense runs: the dense law needs at least 3 dense runs of distinct sizes")
    subsets: list[tuple[str, str | None, pd.DataFrame]] = [("all", None, dense)]
    for name in dense["name"]:
        subsets.append((f"without {name}", name, dense[dense["name"] != name]))
    rows: list[dict[str, Any]] = []
    for label, omitted, part in subsets:
        base = dict(fit=label, omitted=omitted, n_points=len(part))
        try:
            law = fit_power_law(part[x].to_numpy(float), part["final_val_loss"].to_numpy(float),
                                kind=kind, x_name=x)
        except ScalingFitError as exc:
            law, base["error"] = None, str(exc)
        if law is not None:
            base.update(E=law.E, A=law.A, alpha=law.alpha, error=None)
        targets = lev.itertuples(index=False) if len(lev) else [None]
        for r in targets:
            row = dict(base)
            if r is not None:
                size, loss = float(getattr(r, x)), float(r.final_val_loss)
                row.update(run=r.name, n_params=int(size), loss=loss)
                n_eff = math.nan
                if law is not None:
                    try:
                        n_eff = law.invert(loss)
                    except BeyondFittedRange:
                        pass
                row.update(n_eff=n_eff, multiplier=n_eff / size)
            rows.append(row)
    columns = ["fit", "omitted", "n_points", "E", "A", "alpha", "run", "n_params", "loss", "n_eff",
               "multiplier", "error"]
    return pd.DataFrame(rows).reindex(columns=columns)


def multiplier_spread(sensitivity: pd.DataFrame) -> pd.DataFrame:
    """Per Leviathan run: the multiplier with all dense runs, and its range over the leave-one-out fits.

    sensitivity: the table of ``fit_sensitivity``. Columns run, all (multiplier with
    every dense run), loo_min, loo_max (over the fits that give a number) and
    loo_beyond (how many leave-one-out fits put the run beyond the fitted range or fail).
    """
    out = []
    for run, part in sensitivity.dropna(subset=["run"]).groupby("run", sort=False):
        full = part[part["fit"] == "all"]["multiplier"]
        loo = part[part["fit"] != "all"]["multiplier"].to_numpy(float)
        finite = loo[np.isfinite(loo)]
        out.append(dict(run=run, all=float(full.iloc[0]) if len(full) else math.nan,
                        loo_min=float(finite.min()) if finite.size else math.nan,
                        loo_max=float(finite.max()) if finite.size else math.nan,
                        loo_beyond=int(loo.size - finite.size)))
    return pd.DataFrame(out, columns=["run", "all", "loo_min", "loo_max", "loo_beyond"])


# ---- text report ------------------------------------------------------------------------------

def _fmt_ci(ci: Sequence[float | None], fmt: str = "{:.3g}") -> str:
    lo, hi = ci
    lo_s = "-" if lo is None else fmt.format(lo)
    hi_s = "unbounded" if hi is None else fmt.format(hi)
    return f"[{lo_s}, {hi_s}]"


def format_scaling_report(report: dict[str, Any]) -> str:
    """The ``leviathan-explore fit`` text: the dense laws with intervals, then one row per Leviathan run."""
    from ..report import format_table, human

    lines = []
    d = report["dense_fit"]
    pct = f"{100 * d['level']:.0f}%"
    lines.append(f"dense fit on {d['n_points']} runs, N = {report['x']} parameters "
                 f"({human(d['x_min'])} to {human(d['x_max'])}); {pct} bootstrap intervals over runs "
                 f"({d['n_boot']} resamples, {d['n_failed']} unfittable)")
    lines.append(f"  L(N) = E + A * N^(-alpha):  E = {d['E']['value']:.4f} {_fmt_ci(d['E']['ci'], '{:.4f}')}"
                 f"   A = {d['A']['value']:.4g} {_fmt_ci(d['A']['ci'], '{:.4g}')}"
                 f"   alpha = {d['alpha']['value']:.4f} {_fmt_ci(d['alpha']['ci'], '{:.4f}')}"
                 f"   (rms log residual {d['rms_log_residual']:.4f})")
    p = report["pure_fit"]
    lines.append(f"  L(N) = A * N^(-alpha):      A = {p['A']['value']:.4g} {_fmt_ci(p['A']['ci'], '{:.4g}')}"
                 f"   alpha = {p['alpha']['value']:.4f} {_fmt_ci(p['alpha']['ci'], '{:.4f}')}"
                 f"   (rms log residual {p['rms_log_residual']:.4f})")
    c = report.get("compute_fit")
    if c:
        lines.append(f"  L(C) = E + A * C^(-alpha):  E = {c['E']['value']:.4f} {_fmt_ci(c['E']['ci'], '{:.4f}')}"
                     f"   alpha = {c['alpha']['value']:.4f} {_fmt_ci(c['alpha']['ci'], '{:.4f}')}"
                     f"   (C = 6 x (body + head + generator) x tokens)")
    lines.append("")
    lines.append(format_table(["dense run", "N", "FLOPs", "val loss", "lr"],
                              [[r["name"], human(r["n_params"]), f"{r['flops']:.3g}", f"{r['loss']:.4f}",
                                "-" if r["lr"] is None else f"{r['lr']:.3g}"] for r in report["dense"]]))
    lines.append("")
    rows = []
    for r in report["leviathan"]:
        beyond = r["beyond_fitted_range"]
        mult = "beyond the fitted range" if beyond else f"{r['multiplier']:.2f}x"
        if r["extrapolated"]:
            mult += " (extrapolated)"
        matched = "-" if r["matched_dense_loss"] is None else f"{r['matched_dense_loss']:.4f}"
        cm = r["compute_multiplier"]
        rows.append([r["name"], r["match"] or "-", r["match_by"] if r["match"] == "isoparam" else "-",
                     human(r["n_params"]), f"{r['loss']:.4f}", matched,
                     "-" if beyond else human(r["n_eff"]), mult, _fmt_ci(r["multiplier_ci"], "{:.2f}"),
                     "-" if cm is None else f"{cm:.2f}x"])
    if rows:
        lines.append(format_table(["Leviathan run", "match", "by", "N", "val loss", "dense@N", "N_eff",
                                   "multiplier", f"{pct} interval", "FLOP mult."], rows))
        lines.append("multiplier = N_eff / N (the paper reports 1.47x to 2.11x); dense@N = the dense run of the "
                     "same total size; FLOP mult. = dense FLOPs reaching the loss / the run's FLOPs")
    else:
        lines.append("no Leviathan runs")
    for w in report.get("warnings", []):
        lines.append(f"warning: {w}")
    return "\n".join(lines)
