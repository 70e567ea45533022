"""The generator's neighbours (representations/): what each computes, its stages, its counts."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from leviathan_explore.cli import main
from leviathan_explore.config import LeviathanConfig, ModelConfig, preset
from leviathan_explore.model import TransformerLM
from leviathan_explore.params import comparison, count_params, isoparametric_match, real_param_count
from leviathan_explore.representations import MODULES, stage_params
from leviathan_explore.representations.hashed import bucket_ids, collision_rate, hash_coefficients

NEIGHBOURS = sorted(MODULES)


def cfg(repr_: str, **kw) -> ModelConfig:
    base = dict(vocab_size=500, d_model=12, n_layers=1, n_heads=2, token_repr=repr_,
                leviathan=LeviathanConfig(k=3, d_seed=4, n_modes=2, n_knots=5, rank=3), factorized_dim=3,
                hash_buckets=37, hash_functions=2)
    base.update(kw)
    return ModelConfig(**base)


@pytest.mark.parametrize("repr_", NEIGHBOURS)
def test_each_neighbour_counts_its_stages_and_its_table_equals_its_forward(repr_):
    torch.manual_seed(0)
    model = TransformerLM(cfg(repr_))
    rep = model.token_representation
    assert rep.stage_parameters() == stage_params(model.cfg)
    assert real_param_count(model) == count_params(model.cfg)
    ids = torch.randint(0, 500, (3, 7))
    torch.testing.assert_close(rep.table()[ids], model.embed(ids))
    stages = rep.stages(ids[0])
    torch.testing.assert_close(list(stages.values())[-1], model.embed(ids[:1])[0])
    loss = model(ids, ids)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in rep.parameters())


def test_factorized_is_a_table_times_a_projection():
    model = TransformerLM(cfg("factorized"))
    rep = model.represent
    ids = torch.tensor([0, 5, 499])
    torch.testing.assert_close(model.embed(ids[None])[0], rep.rows[ids] @ rep.projection)


def test_codebooks_are_the_generators_stage_one_projected():
    model = TransformerLM(cfg("codebooks"))
    rep = model.represent
    assert rep.base == 8  # 8^3 = 512 >= 500 > 7^3
    i = 3 * 64 + 5 * 8 + 7
    assert rep.digits(torch.tensor([i])).tolist() == [[3, 5, 7]]
    z = rep.codebooks[0, 3] + rep.codebooks[1, 5] + rep.codebooks[2, 7]
    torch.testing.assert_close(model.embed(torch.tensor([[i]]))[0, 0], z @ rep.projection)


def test_hashing_is_fixed_by_its_seed_and_collisions_are_counted():
    a, b = hash_coefficients(3, 7), hash_coefficients(3, 7)
    assert np.array_equal(a, b) and not np.array_equal(a, hash_coefficients(3, 8))
    ids = np.arange(1000)
    buckets = bucket_ids(ids, a, 50)
    assert buckets.shape == (1000, 3) and buckets.min() >= 0 and buckets.max() < 50
    torch_buckets = bucket_ids(torch.arange(1000), a, 50)
    assert np.array_equal(torch_buckets.numpy(), buckets)
    # one hash into 50 buckets: 1000 ids share buckets; three hashes: the tuple almost never repeats
    assert collision_rate(1000, 50, 1, 0) == 1.0
    assert collision_rate(1000, 50, 3, 0) < 0.05
    model = TransformerLM(cfg("hashed"))
    e = model.embed(torch.tensor([[9]]))[0, 0]
    torch.testing.assert_close(e, model.represent.rows[model.represent.buckets_of(torch.tensor(9))].sum(0))
    assert 0.0 <= model.represent.collision_rate() <= 1.0


@pytest.mark.parametrize("repr_", NEIGHBOURS + ["leviathan"])
def test_params_command_prints_each_representations_split(repr_, capsys):
    assert main(["params", "--preset", "cpu-16k", "--repr", repr_, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["representation"]["name"] == repr_
    stages = report["representation"]["stages"]
    assert sum(stages.values()) == report["leviathan_isobody"]["embedding"] + report["leviathan_isobody"]["generator"]
    assert abs(report["leviathan_isoparam"]["relative_gap"]) <= 0.05
    assert main(["params", "--preset", "cpu-16k", "--repr", repr_]) == 0
    assert "stages:" in capsys.readouterr().out


def test_no_layer_norm_ablation_changes_stage_two_only():
    torch.manual_seed(0)
    with_ln = TransformerLM(cfg("leviathan"))
    without = TransformerLM(cfg("leviathan", leviathan=LeviathanConfig(k=3, d_seed=4, n_modes=2, n_knots=5, rank=3,
                                                                         layer_norm=False)))
    without.load_state_dict(with_ln.state_dict())
    z = with_ln.generator.seed(torch.tensor([4]))
    h = torch.einsum("ni,moi->nmo", z, with_ln.generator.seed_proj)
    want = torch.sigmoid((h * with_ln.generator.ln_weight + with_ln.generator.ln_bias) / 2)
    torch.testing.assert_close(without.generator.project_seed(z), want)
    assert not torch.allclose(with_ln.generator.project_seed(z), want)
    assert count_params(with_ln.cfg) == count_params(without.cfg)


def test_isoparametric_match_works_for_every_neighbour_at_the_study_size():
    dense = preset("cpu-16k")
    for repr_ in NEIGHBOURS:
        m = isoparametric_match(dense, repr=repr_)
        assert m.config.token_repr == repr_ and abs(m.relative_gap) <= 0.05 and m.config.n_layers > 2
        assert comparison(dense, repr=repr_)["leviathan_backbone"]["reference"] == "dense_tied"


def test_a_neighbour_cannot_be_tied():
    with pytest.raises(ValueError, match="tie_embeddings"):
        cfg("hashed", tie_embeddings=True)


@pytest.mark.parametrize("repr_", NEIGHBOURS)
def test_each_neighbour_trains_through_the_cli(repr_, tiny_data_dir, tmp_path):
    from leviathan_explore.training.runs import read_summary

    out = tmp_path / repr_
    # same body: at cpu-tiny one layer is 14% of the model, too coarse for every representation's depth match
    assert main(["train", "--arch", repr_, "--match", "isobody", "--preset", "cpu-tiny", "--steps", "3",
                 "--batch-size", "2", "--seq-len", "16", "--data", str(tiny_data_dir), "--out", str(out),
                 "--device", "cpu", "--no-progress", "--threads", "1"]) == 0
    s = read_summary(out)
    assert s["finished"] and s["arch"] == repr_ and s["model_config"]["token_repr"] == repr_
    assert s["params"] == count_params(ModelConfig.from_dict(s["model_config"])).to_dict()
    assert math.isfinite(s["final_val_loss"])
