"""Analytic parameter accounting equals the real count; matching; the params command."""

import json
import subprocess
import sys

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leviathan_explore.cli import main
from leviathan_explore.config import TOKEN_REPRS, ConfigError, LeviathanConfig, ModelConfig, PRESETS, preset
from leviathan_explore.model import TransformerLM
from leviathan_explore.params import (
    MatchError, backbone_pair, comparison, count_params, generator_params, isobody_match, isoparametric_match,
    real_param_count,
)


@st.composite
def model_configs(draw):
    n_heads = draw(st.integers(1, 4))
    head_dim = 2 * draw(st.integers(1, 6))
    n_kv = draw(st.sampled_from([None] + [d for d in range(1, n_heads + 1) if n_heads % d == 0]))
    lev = LeviathanConfig(k=draw(st.integers(1, 4)), d_seed=draw(st.integers(1, 8)),
                          n_modes=draw(st.integers(1, 3)), n_knots=draw(st.integers(3, 8)),
                          rank=draw(st.integers(1, 5)))
    repr_ = draw(st.sampled_from(list(TOKEN_REPRS)))
    return ModelConfig(
        vocab_size=draw(st.integers(1, 3000)), d_model=n_heads * head_dim, n_layers=draw(st.integers(0, 3)),
        n_heads=n_heads, n_kv_heads=n_kv, ffn_hidden=draw(st.one_of(st.none(), st.integers(1, 40))),
        ffn_multiple_of=draw(st.integers(1, 32)), token_repr=repr_,
        tie_embeddings=draw(st.booleans()) if repr_ == "table" else False, leviathan=lev,
        factorized_dim=draw(st.integers(1, 9)), hash_buckets=draw(st.integers(1, 300)),
        hash_functions=draw(st.integers(1, 4)),
    )


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model_configs())
def test_analytic_count_equals_real_count(cfg):  # every token representation, random sizes
    model = TransformerLM(cfg)
    real = sum(p.numel() for p in model.parameters())  # parameters() counts a tied weight once
    analytic = count_params(cfg)
    assert analytic.total == real
    assert analytic == real_param_count(model)


def test_paper_generator_counts():
    gen = generator_params(200_019, 256, preset("paper-109m").leviathan)
    assert gen == {"codebooks": 3 * 59 * 128, "seed_projection": 8 * (128 * 128 + 256),
                   "spline_coefficients": 8 * 128 * 32 * 64, "output_projection": 8 * 64 * 256}
    assert sum(gen.values()) == 2_384_000


def _within(value: float, target: float, rel: float = 0.01) -> bool:
    return abs(value - target) <= rel * target


def test_paper_109m_reproduces_the_published_pair():
    dense = preset("paper-109m")
    assert (dense.d_model, dense.n_layers, dense.ffn_dim, dense.vocab_size, dense.tie_embeddings) == \
        (256, 6, 1024, 200_019, False)
    counts = count_params(dense)
    assert counts.embedding == 200_019 * 256 == counts.head
    assert _within(counts.total, 108.7e6)                               # "109M", 6 layers
    iso = isoparametric_match(dense)
    assert 51 <= iso.config.n_layers <= 53 and _within(iso.params.total, 108.5e6)   # "108.5M", 52 layers
    assert _within(count_params(isobody_match(dense)).total, 59.9e6)    # "~60M" iso-body


def test_paper_421m_and_the_410m_isobody():
    dense = preset("paper-421m")
    assert _within(count_params(dense).total, 420.5e6)
    iso = isoparametric_match(dense)
    assert 27 <= iso.config.n_layers <= 29 and _within(iso.params.total, 421e6)
    wide = preset("paper-610m")
    assert (wide.d_model, wide.n_layers) == (1024, 12)
    assert _within(count_params(isobody_match(wide)).total, 410e6)     # "~410M" iso-body


@pytest.mark.parametrize("name", [n for n in PRESETS if n.startswith("paper-")])
def test_a_size_in_a_preset_name_is_the_size_it_prints(name):
    size = float(name.split("-")[1].rstrip("m")) * 1e6
    assert _within(count_params(preset(name)).total, size)


def test_a_match_that_cannot_come_close_says_so_and_suggests_a_generator_that_fits():
    paper_generator = preset("paper-109m").leviathan
    dense = preset("cpu-tiny", leviathan=paper_generator)  # 2.4M generator against a 262k table
    with pytest.raises(MatchError) as info:
        isoparametric_match(dense)
    assert "5%" in str(info.value) and "generator" in str(info.value) and "631,232" in str(info.value)
    fit = info.value.suggestion
    assert fit is not None
    assert sum(generator_params(dense.vocab_size, dense.d_model, fit).values()) <= 0.05 * dense.vocab_size * 64
    assert abs(isoparametric_match(dense.replace(leviathan=fit)).relative_gap) <= 0.05
    report = comparison(dense)
    assert "error" in report["leviathan_isoparam"] and report["leviathan_isoparam"]["suggested_generator"]


def test_backbone_pair_is_the_revision_comparison():
    dense = preset("paper-421m")
    tied, lev = backbone_pair(dense)
    assert tied.tie_embeddings and tied.token_repr == "table"
    assert lev.token_repr == "leviathan" and not lev.tie_embeddings
    assert (lev.d_model, lev.n_layers, lev.n_heads, lev.ffn_dim) == (tied.d_model, tied.n_layers, tied.n_heads,
                                                                    tied.ffn_dim)
    gap = count_params(lev).total - count_params(tied).total
    assert gap == count_params(lev).generator  # the untied head replaces the tied table row for row
    report = comparison(dense)
    assert report["leviathan_backbone"]["reference"] == "dense_tied"
    assert report["leviathan_backbone"]["relative_gap"] == pytest.approx(gap / count_params(tied).total)


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
    assert set(report) >= {"dense", "dense_tied", "leviathan_isobody", "leviathan_isoparam", "leviathan_backbone"}
    for key in ("dense", "dense_tied", "leviathan_isobody", "leviathan_isoparam", "leviathan_backbone"):
        assert set(report[key]) >= {"embedding", "generator", "body", "head", "total", "n_layers", "d_model"}
    assert abs(report["dense"]["total"] - 108.7e6) <= 0.01 * 108.7e6
    assert 51 <= report["leviathan_isoparam"]["n_layers"] <= 53
    assert abs(report["leviathan_isoparam"]["total"] - 108.5e6) <= 0.01 * 108.5e6
    assert abs(report["leviathan_isoparam"]["relative_gap"]) < 0.01
    assert "reconstruction" in report["about"]["note"]
    assert {k: v for k, v in report.items() if k != "about"} == json.loads(json.dumps(comparison(preset("paper-109m"))))


def test_params_table_names_what_the_preset_reproduces(capsys):
    assert main(["params", "--preset", "paper-421m"]) == 0
    out = capsys.readouterr().out
    assert "'421M'" in out and "reconstruction" in out and "identical backbone" in out
    assert "isoparametric: 28 layers" in out or "isoparametric: 27 layers" in out or "isoparametric: 29 layers" in out


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
