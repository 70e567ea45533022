"""FLOPs are counted in ``leviathan_explore.flops`` only; the registry and the benchmark use it."""

from __future__ import annotations

import json

import pytest

from leviathan_explore import benchmark, bench, flops
from leviathan_explore.analysis import registry
from leviathan_explore.config import preset
from leviathan_explore.params import count_params, isobody_match


def write_summary(run, cfg, tokens):
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({
        "name": run.name, "arch": cfg.token_repr, "params": count_params(cfg).to_dict(), "tokens_seen": tokens,
        "final_val_loss": 4.0, "model_config": cfg.to_dict(), "steps": 10}))


def test_the_registry_charges_a_run_what_flops_training_flops_counts(tmp_path):
    dense = preset("cpu-tiny")
    lev = isobody_match(dense)
    for name, cfg in (("dense", dense), ("lev", lev)):
        write_summary(tmp_path / name, cfg, 12_345)
    table = registry.load_runs(tmp_path).set_index("name")
    for name, cfg in (("dense", dense), ("lev", lev)):
        params = count_params(cfg).to_dict()
        assert table.loc[name, "flops"] == flops.training_flops(params, 12_345)
        # the input table is free: a dense run is charged body + head only
        assert flops.training_flops(params, 1) == 6 * (params["body"] + params["head"] + params.get("generator", 0))
    assert table.loc["lev", "flops"] != table.loc["dense", "flops"]


def test_every_old_import_path_is_the_one_function():
    assert registry.training_flops is flops.training_flops
    for module in (bench, benchmark):
        assert module.matmul_params is flops.matmul_params
        assert module.train_step_flops is flops.train_step_flops
        assert module.generator_flops_per_id is flops.generator_flops_per_id


def test_the_benchmark_count_adds_attention_that_the_fit_count_leaves_out():
    cfg = preset("cpu-tiny")
    tokens, seq_len = 1024, 128
    step = flops.train_step_flops(cfg, tokens, seq_len)
    assert step - 6 * flops.matmul_params(cfg) * tokens == pytest.approx(12 * cfg.n_layers * cfg.d_model * seq_len
                                                                           * tokens)


def test_a_tied_model_pays_for_its_logits():
    from leviathan_explore.config import preset
    from leviathan_explore.params import count_params

    untied, tied = count_params(preset("cpu-tiny")), count_params(preset("cpu-tiny", tie_embeddings=True))
    assert tied.head == 0
    assert flops.training_flops(tied.to_dict(), 1000) == flops.training_flops(untied.to_dict(), 1000)
