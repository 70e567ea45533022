"""Scaling fits, effective parameters, the run registry and the ``fit`` command."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from leviathan_explore.analysis.registry import (RegistryError, load_curves, load_for_fit, load_runs,
                                                 training_flops)
from leviathan_explore.analysis.scaling import (BeyondFittedRange, PowerLaw, ScalingFitError, analyze_runs,
                                                bootstrap_power_law, effective_params, fit_power_law,
                                                percentile_interval)
from leviathan_explore.cli import main

REPO = Path(__file__).resolve().parents[1]
COMMITTED_SWEEP = REPO / "results" / "sweeps" / "cpu-stdlib"

TRUE_E, TRUE_A, TRUE_ALPHA = 1.8, 400.0, 0.45


def law(n, e=TRUE_E, a=TRUE_A, alpha=TRUE_ALPHA):
    return e + a * np.asarray(n, dtype=float) ** (-alpha)


# ---- fits -------------------------------------------------------------------------------------

def test_fit_recovers_exact_law():
    n = np.geomspace(1e5, 1e8, 6)
    fit = fit_power_law(n, law(n))
    assert fit.E == pytest.approx(TRUE_E, rel=1e-4)
    assert fit.A == pytest.approx(TRUE_A, rel=1e-3)
    assert fit.alpha == pytest.approx(TRUE_ALPHA, rel=1e-4)
    assert fit.rms_log_residual < 1e-8


def test_pure_power_law_is_linear_in_log_log():
    n = np.geomspace(1e4, 1e7, 5)
    fit = fit_power_law(n, 30.0 * n**-0.2, kind="pure")
    assert (fit.E, fit.kind) == (0.0, "pure")
    assert fit.A == pytest.approx(30.0, rel=1e-9)
    assert fit.alpha == pytest.approx(0.2, rel=1e-9)


def test_noisy_fit_within_intervals_and_intervals_cover_truth_in_most_trials():
    n = np.geomspace(1e5, 1e8, 6)
    trials, covered = 8, {"E": 0, "A": 0, "alpha": 0}
    for trial in range(trials):
        rng = np.random.default_rng(trial)
        loss = law(n) * np.exp(rng.normal(0.0, 0.01, n.size))  # 1% multiplicative noise
        boot = bootstrap_power_law(n, loss, n_boot=120, seed=trial, level=0.95)
        for name, truth in (("E", TRUE_E), ("A", TRUE_A), ("alpha", TRUE_ALPHA)):
            lo, hi = boot.ci(name)
            assert lo <= getattr(boot.fit, name) <= hi
            covered[name] += lo <= truth <= hi
    for name, hits in covered.items():
        assert hits >= 0.75 * trials, f"{name} interval covered the truth in only {hits}/{trials} trials"


def test_bootstrap_is_deterministic_for_a_seed():
    n = np.geomspace(1e5, 1e8, 5)
    loss = law(n) * np.exp(np.random.default_rng(3).normal(0, 0.01, n.size))
    a = bootstrap_power_law(n, loss, n_boot=50, seed=7)
    b = bootstrap_power_law(n, loss, n_boot=50, seed=7)
    c = bootstrap_power_law(n, loss, n_boot=50, seed=8)
    np.testing.assert_array_equal(a.samples, b.samples)
    assert not np.array_equal(a.samples, c.samples)


def test_inversion_returns_the_size_on_the_curve():
    fit = PowerLaw(E=TRUE_E, A=TRUE_A, alpha=TRUE_ALPHA)
    for n in (1e4, 3.3e6, 2e9):
        assert effective_params(fit, float(law(n))) == pytest.approx(n, rel=1e-9)


def test_inversion_at_or_below_the_floor_is_beyond_the_fitted_range():
    fit = PowerLaw(E=2.0, A=100.0, alpha=0.3)
    for loss in (2.0, 1.5):
        with pytest.raises(BeyondFittedRange, match="beyond the fitted range"):
            effective_params(fit, loss)


def test_percentile_interval_with_unbounded_samples():
    lo, hi = percentile_interval([1.0, 2.0, 3.0, np.inf, np.inf], 0.9)
    assert lo == pytest.approx(1.2) and hi == math.inf
    assert percentile_interval([1.0] * 10, 0.9) == (1.0, 1.0)


@pytest.mark.parametrize("n,loss,kind,match", [
    ([1e6, 1e7], [3.0, 2.8], "saturating", "needs at least 3 dense runs"),
    ([1e6, 1e6, 1e6], [3.0, 2.9, 3.1], "saturating", "1 distinct dense size"),
    ([1e6], [3.0], "pure", "needs at least 2"),
    ([1e6, 1e7, 1e8], [3.0, float("nan"), 2.5], "saturating", "finite"),
    ([1e6, -1e7, 1e8], [3.0, 2.7, 2.5], "saturating", "positive"),
])
def test_fits_that_cannot_be_made_raise_clear_errors(n, loss, kind, match):
    with pytest.raises(ScalingFitError, match=match):
        fit_power_law(n, loss, kind=kind)


# ---- fake run directories -----------------------------------------------------------------------

def write_run(root: Path, name: str, *, arch: str, head: int, body: int, loss: float, embedding: int = 0,
              match: str | None = None, tokens: int = 1_000_000, finished: bool = True, generator: int = 0,
              metrics: bool = True) -> Path:
    """A run directory with the TRAINING contract's summary.json (and a short metrics.jsonl)."""
    run = root / name
    run.mkdir(parents=True)
    params = {"embedding": embedding, "generator": generator, "body": body, "head": head, "n_layers": 2,
              "d_model": 64, "total": embedding + generator + body + head}
    summary = {"name": name, "arch": arch, "match": match, "match_by": "depth" if match else "depth",
               "preset": "cpu-tiny", "model_config": {"vocab_size": 4097, "d_model": 64, "n_layers": 2},
               "params": params, "steps": 100, "tokens_seen": tokens, "final_val_loss": loss,
               "final_val_ppl": math.exp(loss) if math.isfinite(loss) else None,
               "bucket_losses": {"frequent": loss - 0.5, "medium": loss, "rare": loss + 1.0},
               "mean_tokens_per_s": 10_000.0, "wall_time_s": 100.0, "lr": 3e-3,
               "hardware": {"device": "cpu", "device_name": "test", "torch": "x", "cpu_count": 2},
               "data": {"dir": "d", "source": "python-stdlib", "tokenizer": "o200k_base", "vocab_size": 4097,
                        "content_hash": "abc"},
               "stopped_early": not finished, "finished": finished}
    (run / "summary.json").write_text(json.dumps(summary))
    if metrics:
        lines = [{"type": "train", "step": 10, "tokens": 10, "loss": 5.0, "lr": 1e-3, "grad_norm": 1.0,
                  "tokens_per_s": 1.0, "peak_mem_mb": 0.0},
                 {"type": "eval", "step": 10, "tokens": 10, "val_loss": loss, "val_ppl": 1.0,
                  "bucket_losses": {"frequent": 1.0, "medium": 2.0, "rare": 3.0}},
                 {"type": "train", "step": 5, "tokens": 5, "loss": 6.0, "lr": 1e-3, "grad_norm": 1.0,
                  "tokens_per_s": 1.0, "peak_mem_mb": 0.0}]
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return run


DENSE_TOTALS = [200_000, 400_000, 800_000, 1_600_000, 3_200_000]


def make_sweep_like_dir(root: Path) -> Path:
    """Dense runs on the known law; Leviathan runs at 2x and on the law's floor."""
    runs = root / "runs"
    for i, total in enumerate(DENSE_TOTALS):
        write_run(runs, f"dense-{i}", arch="dense", embedding=total // 4, head=total // 4, body=total - total // 2,
                  loss=float(law(total)))
    # a Leviathan run of 400k parameters with the loss of a 800k dense model: multiplier 2
    write_run(runs, "lev-2x", arch="leviathan", match="isoparam", head=200_000, body=180_000,
              generator=20_000, loss=float(law(800_000)))
    write_run(runs, "lev-floor", arch="leviathan", match="isoparam", head=200_000, body=180_000,
              generator=20_000, loss=TRUE_E - 0.01)
    return root


# ---- registry -----------------------------------------------------------------------------------

def test_load_runs_reads_every_run_with_flops_formula(tmp_path):
    make_sweep_like_dir(tmp_path)
    df = load_runs(tmp_path)
    assert len(df) == 7
    row = df.set_index("name").loc["lev-2x"]
    assert row["total"] == 400_000 and row["embedding"] == 0
    assert row["non_embedding"] == row["body"] + row["head"]
    assert row["flops"] == 6 * (row["body"] + row["head"] + row["generator"]) * row["tokens"]
    assert training_flops({"body": 1, "head": 2, "generator": 3}, 10) == 360
    assert row["loss_rare"] == pytest.approx(row["final_val_loss"] + 1.0)
    # a single run directory and a runs/ directory work too
    assert len(load_runs(tmp_path / "runs" / "dense-0")) == 1
    assert len(load_runs(tmp_path / "runs")) == 7


def test_load_curves_sorted_and_flattened(tmp_path):
    run = write_run(tmp_path, "r", arch="dense", head=10, body=10, loss=3.0)
    curves = load_curves(run)
    assert curves["step"].tolist() == [5, 10, 10]
    assert curves["type"].tolist() == ["train", "train", "eval"]
    assert curves["loss_rare"].iloc[2] == 3.0


def test_registry_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such directory"):
        load_runs(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RegistryError, match="no runs found"):
        load_runs(tmp_path / "empty")
    crashed = tmp_path / "sweep" / "crashed"
    crashed.mkdir(parents=True)
    (crashed / "config.json").write_text("{}")
    write_run(tmp_path / "sweep", "ok", arch="dense", head=10, body=10, loss=3.0)
    with pytest.raises(RegistryError, match="crashed: missing summary.json"):
        load_runs(tmp_path / "sweep")
    assert load_runs(tmp_path / "sweep", skip_incomplete=True)["name"].tolist() == ["ok"]
    bad = write_run(tmp_path / "bad", "torn", arch="dense", head=10, body=10, loss=3.0)
    (bad / "summary.json").write_text('{"name": ')
    with pytest.raises(RegistryError, match=r"torn[/\\]summary.json: not valid JSON"):
        load_runs(tmp_path / "bad")
    write_run(tmp_path / "nan", "diverged", arch="dense", head=10, body=10, loss=float("nan"))
    with pytest.raises(RegistryError, match="diverged: final_val_loss=nan is not finite"):
        load_runs(tmp_path / "nan")


# ---- effective parameters from runs -------------------------------------------------------------

def test_analyze_runs_gives_the_known_multiplier(tmp_path):
    report = analyze_runs(load_runs(make_sweep_like_dir(tmp_path)), n_boot=60, seed=0)
    assert report.dense_fit.fit.alpha == pytest.approx(TRUE_ALPHA, rel=1e-3)
    by_name = {r.name: r for r in report.leviathan}
    two = by_name["lev-2x"]
    assert two.multiplier == pytest.approx(2.0, rel=1e-3)
    lo, hi = two.multiplier_ci
    assert lo <= two.multiplier <= hi
    assert two.matched_dense == "dense-1" and two.loss < two.matched_dense_loss
    assert two.compute_multiplier is not None and two.compute_multiplier > 0
    floor = by_name["lev-floor"]
    assert floor.n_eff is None and floor.multiplier is None
    assert floor.to_dict()["beyond_fitted_range"] is True


def test_analyze_needs_enough_dense_runs(tmp_path):
    write_run(tmp_path, "only", arch="dense", head=100, body=100, loss=3.0)
    with pytest.raises(ScalingFitError, match="1 dense run"):
        analyze_runs(load_runs(tmp_path))


# ---- the fit command ----------------------------------------------------------------------------

def test_fit_cli_json_and_text(tmp_path, capsys):
    make_sweep_like_dir(tmp_path)
    assert main(["fit", str(tmp_path), "--json", "--n-boot", "40"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["dense_fit"]["alpha"]) == {"value", "ci"}
    lev = {r["name"]: r for r in out["leviathan"]}
    assert lev["lev-2x"]["multiplier"] == pytest.approx(2.0, rel=1e-3)
    assert {"name", "n_params", "loss", "n_eff", "multiplier", "multiplier_ci"} <= set(lev["lev-2x"])
    assert lev["lev-floor"]["n_eff"] is None
    assert main(["fit", str(tmp_path), "--n-boot", "40"]) == 0
    text = capsys.readouterr().out
    assert "beyond the fitted range" in text and "2.00x" in text


def test_fit_cli_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["fit", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no runs found" in err
    write_run(tmp_path / "one", "only", arch="dense", head=100, body=100, loss=3.0)
    assert main(["fit", str(tmp_path / "one")]) == 2
    assert "needs at least 3 dense runs" in capsys.readouterr().err


def test_fit_uses_the_selected_runs_of_a_sweep(tmp_path):
    make_sweep_like_dir(tmp_path)
    # a worse learning rate of the same dense model: must not enter the fit
    write_run(tmp_path / "runs", "dense-0-badlr", arch="dense", embedding=50_000, head=50_000, body=100_000, loss=9.0)
    models = {f"m{i}": {"run": f"dense-{i}"} for i in range(len(DENSE_TOTALS))}
    models["lev"] = {"run": "lev-2x"}
    (tmp_path / "selected.json").write_text(json.dumps({"models": models}))
    names = load_for_fit(tmp_path)["name"].tolist()
    assert "dense-0-badlr" not in names and "lev-floor" not in names and len(names) == 6


# ---- the committed sweep --------------------------------------------------------------------------

@pytest.mark.skipif(not (COMMITTED_SWEEP / "fit.json").is_file(), reason="no committed sweep")
def test_fit_reproduces_the_committed_sweep(capsys):
    committed = json.loads((COMMITTED_SWEEP / "fit.json").read_text())
    d = committed["dense_fit"]
    assert main(["fit", str(COMMITTED_SWEEP), "--json", "--n-boot", str(d["n_boot"]),
                 "--seed", str(d["seed"]), "--level", str(d["level"]), "--x", committed["x"]]) == 0
    fresh = json.loads(capsys.readouterr().out)
    # Tolerances allow for another BLAS; a floor at its bound (E ~ 1e-15) is compared absolutely.
    for key in ("E", "A", "alpha"):
        assert fresh["dense_fit"][key]["value"] == pytest.approx(d[key]["value"], rel=1e-4, abs=1e-6)
        for got, want in zip(fresh["dense_fit"][key]["ci"], d[key]["ci"]):
            assert got == pytest.approx(want, rel=1e-2, abs=1e-4)
    assert [r["name"] for r in fresh["leviathan"]] == [r["name"] for r in committed["leviathan"]]
    for got, want in zip(fresh["leviathan"], committed["leviathan"]):
        assert got["loss"] == want["loss"]
        for key in ("n_eff", "multiplier"):
            if want[key] is None:
                assert got[key] is None
            else:
                assert got[key] == pytest.approx(want[key], rel=1e-3)
        for g, w in zip(got["multiplier_ci"], want["multiplier_ci"]):
            assert (g is None and w is None) or g == pytest.approx(w, rel=1e-2, abs=1e-4)


def test_fit_warns_plainly_when_the_dense_law_is_not_determined(capsys):
    """The committed cpu-stdlib-v2 sweep: non-monotone dense losses, alpha ~0.03, E at 0."""
    from pathlib import Path

    from leviathan_explore.cli import main

    sweep = Path(__file__).resolve().parents[1] / "results" / "sweeps" / "cpu-stdlib-v2"
    assert main(["fit", str(sweep), "--n-boot", "100"]) == 0
    out = capsys.readouterr().out
    assert "Warning: the dense law is not determined" in out
    for reason in ("exponent's interval reaches 0", "lower bound 0", "does not fall with size"):
        assert reason in out, reason
    assert main(["fit", str(sweep), "--n-boot", "100", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["law_determined"] is False and len(report["law_problems"]) >= 3
