"""The computations the tutorial notebooks use: the training pair (analysis/training_pair.py), run curves
(registry), leave-one-out fits (scaling), mode factors (anatomy), neighbour agreement and initial weights
(embedding_maps, embedding_sources, training.runs) and the learning-rate table (sweep)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from leviathan_explore.analysis.registry import run_curves
from leviathan_explore.analysis.scaling import ScalingFitError, fit_sensitivity, multiplier_spread
from leviathan_explore.analysis.training_pair import (TutorialPair, ensure_corpus, ensure_pair, project_root,
                                                      tutorial_pair)

E, A, ALPHA = 2.0, 40.0, 0.3


def law(n):
    return E + A * np.asarray(n, dtype=float) ** -ALPHA


def runs_table(dense_sizes, lev):
    """A registry-like table: dense runs on the law, Leviathan runs given as (name, size, loss)."""
    rows = [dict(name=f"dense-{int(n)}", arch="dense", total=int(n), final_val_loss=float(law(n)))
            for n in dense_sizes]
    rows += [dict(name=name, arch="leviathan", total=int(n), final_val_loss=float(loss)) for name, n, loss in lev]
    return pd.DataFrame(rows)


def test_project_root_found_from_a_subfolder(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "leviathan-explore"\n')
    (tmp_path / "notebooks" / "deep").mkdir(parents=True)
    assert project_root(tmp_path / "notebooks" / "deep") == tmp_path.resolve()


def test_project_root_ignores_other_projects(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "something-else"\n')
    with pytest.raises(FileNotFoundError, match="not inside a leviathan-explore checkout"):
        project_root(tmp_path)


def test_exact_law_gives_the_true_multiplier_in_every_subset():
    sizes = [1e5, 3e5, 1e6, 3e6, 1e7]
    # a Leviathan run of size 1e6 that reaches the dense loss of 2.5e6: multiplier 2.5
    runs = runs_table(sizes, [("lev-a", 1e6, law(2.5e6))])
    sens = fit_sensitivity(runs)
    assert list(sens["fit"]) == ["all"] + [f"without dense-{int(n)}" for n in sizes]
    assert sens["n_points"].tolist() == [5, 4, 4, 4, 4, 4]
    np.testing.assert_allclose(sens["multiplier"], 2.5, rtol=1e-3)
    np.testing.assert_allclose(sens["alpha"], ALPHA, rtol=1e-3)
    spread = multiplier_spread(sens)
    assert spread.loc[0, "run"] == "lev-a"
    assert spread.loc[0, "loo_min"] <= spread.loc[0, "all"] <= spread.loc[0, "loo_max"]
    assert spread.loc[0, "loo_beyond"] == 0


def test_noisy_point_moves_the_multiplier_only_when_included():
    sizes = [1e5, 3e5, 1e6, 3e6, 1e7]
    runs = runs_table(sizes, [("lev-a", 1e6, law(2e6))])
    runs.loc[runs["name"] == "dense-10000000", "final_val_loss"] *= 1.03  # one bad dense point
    sens = fit_sensitivity(runs).set_index("fit")
    clean = sens.loc["without dense-10000000", "multiplier"]
    assert clean == pytest.approx(2.0, rel=1e-2)
    assert abs(sens.loc["all", "multiplier"] - 2.0) > abs(clean - 2.0)


def test_loss_below_the_floor_is_beyond_the_fitted_range():
    runs = runs_table([1e5, 1e6, 1e7, 1e8], [("lev-low", 1e6, E * 0.9)])
    sens = fit_sensitivity(runs)
    assert sens["multiplier"].isna().all()
    assert multiplier_spread(sens).loc[0, "loo_beyond"] == 4


def test_too_few_dense_runs_for_a_subset_is_reported_not_raised():
    runs = runs_table([1e5, 1e6, 1e7], [("lev-a", 1e6, law(2e6))])
    sens = fit_sensitivity(runs).set_index("fit")
    assert sens.loc["all", "error"] is None or pd.isna(sens.loc["all", "error"])
    assert sens.loc["all", "multiplier"] == pytest.approx(2.0, rel=1e-3)
    for name in ("dense-100000", "dense-1000000", "dense-10000000"):
        assert "needs at least 3" in sens.loc[f"without {name}", "error"]
        assert math.isnan(sens.loc[f"without {name}", "multiplier"])


def test_pure_law_fits_with_two_points():
    runs = runs_table([1e5, 1e6, 1e7], [("lev-a", 1e6, 3.0)])
    sens = fit_sensitivity(runs, kind="pure")
    assert sens["error"].isna().all()
    assert (sens["E"] == 0).all()


def test_bad_tables_raise_clear_errors():
    with pytest.raises(ValueError, match="lacks column 'final_val_loss'"):
        fit_sensitivity(pd.DataFrame({"name": [], "arch": [], "total": []}))
    with pytest.raises(ScalingFitError, match="no dense runs"):
        fit_sensitivity(runs_table([], [("lev-a", 1e6, 3.0)]))


def test_mode_factors_multiply_to_the_generators_mode_features():
    import torch

    from leviathan_explore.config import LeviathanConfig
    from leviathan_explore.generator import LeviathanGenerator, signed_log_product

    torch.manual_seed(0)
    gen = LeviathanGenerator(500, 16, LeviathanConfig(k=2, d_seed=8, n_modes=3, n_knots=6, rank=5,
                                                      spline_init_std=0.3))
    gen.impl = "reference"
    u = gen.mode_inputs(torch.tensor([0, 7, 499])).detach()                 # [3, M, d]
    with torch.no_grad():
        phi = gen.mode_factors(u)  # the generator's own stage 3 before the product
    assert phi.shape == (3, 3, 8, 5)
    torch.testing.assert_close(signed_log_product(phi, dim=-2), gen.mode_features(u).detach())
    torch.testing.assert_close(phi.prod(dim=-2), gen.mode_features(u).detach(), rtol=1e-4, atol=1e-6)


def test_tutorial_pair_keeps_quick_and_full_apart(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "leviathan-explore"\n')
    quick, full = tutorial_pair(True, tmp_path), tutorial_pair(False, tmp_path)
    assert quick.data_dir != full.data_dir and quick.runs_dir != full.runs_dir
    assert full.data_dir == tmp_path.resolve() / "data" / "shards" / "python-stdlib-compact"
    assert quick.train["steps"] < full.train["steps"]
    assert quick.corpus["max_tokens"] == 1_000_000 and full.corpus["max_tokens"] is None
    assert set(quick.run_dirs) == {"dense", "leviathan"}


def test_ensure_corpus_reuses_a_matching_corpus_and_refuses_another(tiny_data_dir):
    from leviathan_explore.data import read_manifest

    before = (tiny_data_dir / "train.bin").stat().st_mtime_ns
    m = read_manifest(tiny_data_dir)
    got = ensure_corpus(tiny_data_dir, source="python-stdlib", compact=m["compact"], max_tokens=m["max_tokens"])
    assert got["content_hash"] == m["content_hash"]
    assert (tiny_data_dir / "train.bin").stat().st_mtime_ns == before  # not rebuilt
    with pytest.raises(ValueError, match=r"compact=2048, not 4096"):
        ensure_corpus(tiny_data_dir, source="python-stdlib", compact=4096, max_tokens=m["max_tokens"])


def test_ensure_corpus_builds_when_absent(tmp_path):
    out = tmp_path / "corpus"
    m = ensure_corpus(out, source="python-stdlib", compact=64, max_tokens=60_000, progress=False)
    assert (out / "manifest.json").is_file() and m["vocab_size"] == 65
    assert m["max_tokens"] == 60_000 and m["compact"] == 64


def test_ensure_pair_trains_once_then_reads_back(tiny_data_dir, tmp_path):
    from leviathan_explore.data import read_manifest

    m = read_manifest(tiny_data_dir)
    pair = TutorialPair(tiny_data_dir, tmp_path / "runs",
                        corpus=dict(source="python-stdlib", compact=m["compact"], max_tokens=m["max_tokens"]),
                        train=dict(preset="cpu-tiny", steps=4, batch_size=2, seq_len=16, eval_every=2,
                                   eval_batches=1, log_every=1, checkpoint_every=4, device="cpu",
                                   model=dict(d_model=16, n_heads=2)))
    first = ensure_pair(pair, progress=False)
    assert [s["arch"] for s in first] == ["dense", "leviathan"] and all(s["finished"] for s in first)
    metrics = (pair.run_dirs["dense"] / "metrics.jsonl").read_text()
    again = ensure_pair(pair, progress=False)
    assert [s["final_val_loss"] for s in again] == [s["final_val_loss"] for s in first]
    assert [s["resumed_from"] for s in again] == [4, 4]  # read back from the last checkpoint, not retrained
    assert (pair.run_dirs["dense"] / "metrics.jsonl").read_text() == metrics

    curves = run_curves(pair.run_dirs["leviathan"])
    assert curves["train_x"] == [1, 2, 3, 4] and len(curves["train_loss"]) == 4
    assert curves["val_x"] == [2, 4] and all(np.isfinite(curves["val_loss"]))
    assert run_curves(pair.run_dirs["dense"], x="tokens")["val_x"] == [2 * 2 * 16, 4 * 2 * 16]
    with pytest.raises(ValueError, match="x='epoch' is invalid"):
        run_curves(pair.run_dirs["dense"], x="epoch")


def test_neighbour_agreement_sees_clusters_and_not_noise():
    from leviathan_explore.analysis.embedding_maps import neighbour_agreement

    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2, 3], 50)
    centres = rng.normal(size=(4, 16)) * 5
    clustered = centres[labels] + rng.normal(size=(200, 16))
    got = neighbour_agreement(clustered, labels, k=5)
    assert got["agreement"] > 0.95
    assert got["chance"] == pytest.approx(4 * 50 * 49 / (200 * 199))
    noise = neighbour_agreement(rng.normal(size=(200, 16)), labels, k=5)
    assert 0.5 < noise["lift"] < 1.6 and got["lift"] > 3
    with pytest.raises(ValueError, match="k=200 is invalid"):
        neighbour_agreement(clustered, labels, k=200)
    with pytest.raises(ValueError, match="must agree"):
        neighbour_agreement(clustered, labels[:10])


def test_initial_model_rebuilds_the_weights_before_the_first_step(tiny_data_dir, tmp_path):
    import torch

    from leviathan_explore.analysis.embedding_sources import initial_source, run_source
    from leviathan_explore.training import TrainConfig, initial_model, load_run_model, train

    runs = {}
    for arch in ("dense", "leviathan"):
        # lr so small that one step moves no weight by more than ~1e-9
        cfg = TrainConfig(arch=arch, preset="cpu-tiny", steps=1, batch_size=2, seq_len=16, lr=1e-9,
                          warmup_steps=0, eval_every=1, eval_batches=1, checkpoint_every=1, device="cpu",
                          seed=3, data_dir=str(tiny_data_dir), out_dir=str(tmp_path / arch), progress=False,
                          model=dict(d_model=16, n_heads=2))
        train(cfg)
        runs[arch] = tmp_path / arch
    state = torch.random.get_rng_state()
    before = initial_model(runs["leviathan"])
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's random state is untouched
    after = load_run_model(runs["leviathan"])
    for (name, p0), (_, p1) in zip(before.named_parameters(), after.named_parameters()):
        torch.testing.assert_close(p0, p1, atol=1e-6, rtol=0, msg=name)

    trained = run_source(runs["leviathan"], runs["dense"])
    start = initial_source(trained, runs["leviathan"], runs["dense"])
    ids = np.arange(5)
    np.testing.assert_allclose(start.dense_rows(ids), trained.dense_rows(ids), atol=1e-6)
    np.testing.assert_allclose(start.generated(ids), trained.generated(ids), atol=1e-5)
    assert start.texts(ids) == trained.texts(ids) and start.generator is not trained.generator


def test_lr_search_table_reads_the_selection(tmp_path):
    import json

    from leviathan_explore.analysis.sweep import lr_search_table

    sel = {"models": {
        "d8-dense": {"arch": "dense", "run": "d8-dense-lr0.005", "candidates": [
            {"lr": 0.002, "run": "d8-dense-lr0.002", "val_loss": 5.1, "status": "finished"},
            {"lr": 0.005, "run": "d8-dense-lr0.005", "val_loss": 4.9, "status": "finished"},
            {"lr": 0.0125, "run": "d8-dense-lr0.0125", "val_loss": None, "status": "diverged"}]},
        "d8-lev": {"arch": "leviathan", "run": "d8-lev-lr0.002", "candidates": [
            {"lr": 0.002, "run": "d8-lev-lr0.002", "val_loss": 5.0, "status": "finished"}]}}}
    (tmp_path / "selected.json").write_text(json.dumps(sel))
    table = lr_search_table(tmp_path)
    assert table["model"].tolist() == ["d8-dense"] * 3 + ["d8-lev"]
    assert table["selected"].tolist() == [False, True, False, True]
    assert math.isnan(table.loc[2, "val_loss"]) and table.loc[2, "status"] == "diverged"
    with pytest.raises(FileNotFoundError, match="not a finished sweep"):
        lr_search_table(tmp_path / "missing")
    (tmp_path / "selected.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="is not a sweep selection"):
        lr_search_table(tmp_path)
