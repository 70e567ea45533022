"""Analytic parameter accounting equals the real count; matching; the params command."""

import json
import subprocess
import sys

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leviathan_explore.cli import main
from leviathan_explore.config import ConfigError, LeviathanConfig, ModelConfig, PRESETS, preset
from leviathan_explore.model import TransformerLM
from leviathan_explore.params import (
    comparison, count_params, generator_params, isobody_match, isoparametric_match, real_param_count,
)


@st.composite
def model_configs(draw):
    n_heads = draw(st.integers(1, 4))
    head_dim = 2 * draw(st.integers(1, 6))
    n_kv = draw(st.sampled_from([None] + [d for d in range(1, n_heads + 1) if n_heads % d == 0]))
    lev = LeviathanConfig(k=draw(st.integers(1, 4)), d_seed=draw(st.integers(1, 8)),
                          n_modes=draw(st.integers(1, 3)), n_knots=draw(st.integers(3, 8)),
                          rank=draw(st.integers(1, 5)))
    repr_ = draw(st.sampled_from(["table", "leviathan"]))
    return ModelConfig(
        vocab_size=draw(st.integers(1, 3000)), d_model=n_heads * head_dim, n_layers=draw(st.integers(0, 3)),
        n_heads=n_heads, n_kv_heads=n_kv, ffn_hidden=draw(st.one_of(st.none(), st.integers(1, 40))),
        ffn_multiple_of=draw(st.integers(1, 32)), token_repr=repr_,
        tie_embeddings=draw(st.booleans()) if repr_ == "table" else False, leviathan=lev,
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model_configs())
def test_analytic_count_equals_real_count(cfg):
    model = TransformerLM(cfg)
    real = sum(p.numel() for p in model.parameters())  # parameters() counts a tied weight once
    analytic = count_params(cfg)
    assert analytic.total == real
    assert analytic == real_param_count(model)


def test_paper_preset_counts():
    dense = preset("paper-109m")
    counts = count_params(dense)
    assert counts.embedding == 200_019 * 512 == counts.head
    gen = generator_params(200_019, 512, LeviathanConfig())
    assert gen == {"codebooks": 3 * 59 * 128, "seed_projection": 8 * (128 * 128 + 256),
                   "spline_coefficients": 8 * 128 * 32 * 64, "output_projection": 8 * 64 * 512}
    assert sum(gen.values()) < 3_000_000


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_isoparametric_match_by_depth_is_closest(name):
    dense = preset(name)
    match = isoparametric_match(dense)
    target = count_params(dense).total
    assert match.config.d_model == dense.d_model and match.config.token_repr == "leviathan"
    assert abs(match.relative_gap) == abs(match.params.total - target) / target
    for n in (match.config.n_layers - 1, match.config.n_layers + 1):  # neighbours are no closer
        if n >= 1:
            other = count_params(match.config.replace(n_layers=n)).total
            assert abs(other - target) >= abs(match.params.total - target)


@pytest.mark.parametrize("by", ["width", "ffn"])
def test_other_matching_modes_keep_depth_and_are_close(by):
    dense = preset("cpu-small")
    match = isoparametric_match(dense, by=by)
    assert match.config.n_layers == dense.n_layers
    assert abs(match.relative_gap) < 0.05
    if by == "ffn":
        assert match.config.d_model == dense.d_model and match.config.ffn_dim > dense.ffn_dim
    else:
        assert match.config.d_model > dense.d_model


def test_isobody_keeps_the_body():
    dense = preset("paper-109m", tie_embeddings=True)
    iso = isobody_match(dense)
    assert count_params(iso).body == count_params(dense).body
    assert iso.tie_embeddings is False and count_params(iso).embedding == 0


def test_params_json_for_paper_preset(capsys):
    assert main(["params", "--preset", "paper-109m", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) >= {"dense", "leviathan_isobody", "leviathan_isoparam"}
    for key in ("dense", "leviathan_isobody", "leviathan_isoparam"):
        assert set(report[key]) >= {"embedding", "generator", "body", "head", "total", "n_layers", "d_model"}
    assert report["dense"]["embedding"] == 200_019 * 512
    assert report["leviathan_isobody"]["generator"] < 3_000_000
    assert report["leviathan_isoparam"]["n_layers"] >= 3 * 6
    assert abs(report["leviathan_isoparam"]["relative_gap"]) < 0.01
    assert report == json.loads(json.dumps(comparison(preset("paper-109m"))))


def test_params_table_output(capsys):
    assert main(["params", "--vocab-size", "50257", "--d-model", "256", "--n-layers", "4", "--n-heads", "4"]) == 0
    out = capsys.readouterr().out
    assert "embedding" in out and "Leviathan isoparametric" in out and "%" in out


@pytest.mark.parametrize("argv,needle", [
    (["params", "--n-layers", "-3"], "-3"), (["params", "--d-model", "abc"], "abc"),
    (["params", "--vocab-size", "2.5"], "2.5"), (["params", "--preset", "nope"], "nope"),
    (["params", "--n-heads", "7"], "n_heads"), (["params", "--vocab-size", "0"], "0"),
    (["params", "--match-by", "magic"], "magic"),
])
def test_bad_params_arguments_exit_2_with_one_line(argv, needle):
    proc = subprocess.run([sys.executable, "-m", "leviathan_explore.cli", *argv], capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in proc.stderr
