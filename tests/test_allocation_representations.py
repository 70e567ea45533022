"""analysis.allocation.representation_report: params.comparison for every representation that
can replace the dense table, with its own settings, validated at the boundary."""

import pytest

from leviathan_explore.analysis.allocation import REPLACEMENTS, allocation_report, representation_report
from leviathan_explore.config import TOKEN_REPRS, ConfigError, LeviathanConfig, ModelConfig
from leviathan_explore.params import comparison

GENERATOR = dict(k=3, d_seed=64, n_modes=4, n_knots=16, rank=32)
DENSE = dict(vocab_size=50_257, d_model=256, n_layers=4, n_heads=4, tied=False)


def test_replacements_are_every_representation_but_the_table():
    assert set(REPLACEMENTS) == set(TOKEN_REPRS) - {"table"} and REPLACEMENTS[0] == "leviathan"


@pytest.mark.parametrize("representation", REPLACEMENTS)
def test_representation_report_is_params_comparison_with_the_settings(representation):
    settings = dict(factorized_dim=24, hash_buckets=2048, hash_functions=3)
    got = representation_report(**DENSE, generator=GENERATOR, match_by="depth", representation=representation,
                                **settings)
    dense = ModelConfig(vocab_size=50_257, d_model=256, n_layers=4, n_heads=4, leviathan=LeviathanConfig(**GENERATOR),
                        **settings)
    assert got == comparison(dense, by="depth", repr=representation)
    assert got["representation"]["name"] == representation


def test_the_leviathan_report_is_the_allocation_report():
    assert representation_report(**DENSE, generator=GENERATOR) == allocation_report(**DENSE, generator=GENERATOR)


@pytest.mark.parametrize("field, value", [("factorized_dim", 0), ("factorized_dim", 65_537), ("hash_buckets", 0),
                                          ("hash_buckets", 100_000_001), ("hash_functions", 0),
                                          ("hash_functions", 17)])
def test_bad_settings_are_refused_naming_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        representation_report(**DENSE, generator=GENERATOR, representation="hashed", **{field: value})


@pytest.mark.parametrize("representation", ["table", "bogus", ""])
def test_only_replacements_are_accepted(representation):
    with pytest.raises(ConfigError, match="representation"):
        representation_report(**DENSE, generator=GENERATOR, representation=representation)
