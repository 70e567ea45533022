"""The figures only the notebooks draw so far: fit sensitivity (viz/scaling.py) and neighbour agreement
(viz/geometry.py)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from leviathan_explore.viz.geometry import neighbour_agreement_figure
from leviathan_explore.viz.scaling import fit_sensitivity_figure


def sensitivity_table():
    rows = []
    for fit, mults in (("all", (1.8, 1.2)), ("without d1", (2.0, math.nan)), ("without d2", (1.5, 1.1))):
        for run, m in zip(("lev-a", "lev-b"), mults):
            rows.append(dict(fit=fit, run=run, multiplier=m))
    return pd.DataFrame(rows)


def test_fit_sensitivity_figure_has_one_line_per_run_and_the_paper_band():
    fig = fit_sensitivity_figure(sensitivity_table())
    lines = [t for t in fig.data if t.mode == "lines+markers"]
    assert [t.name for t in lines] == ["lev-a", "lev-b (1 fit(s) beyond range)"]
    assert list(lines[0].x) == ["all", "without d1", "without d2"]
    assert list(lines[0].y) == [1.8, 2.0, 1.5]
    assert lines[1].y[1] is None  # beyond the fitted range: a gap, not a number
    band = fig.layout.shapes[0]
    assert (band.y0, band.y1) == (1.47, 2.11)
    assert fig.layout.yaxis.title.text == "N_eff / N" and fig.layout.xaxis.title.text


def test_fit_sensitivity_figure_rejects_tables_without_runs():
    with pytest.raises(ValueError, match="lacks"):
        fit_sensitivity_figure(pd.DataFrame({"fit": ["all"]}))
    with pytest.raises(ValueError, match="no Leviathan runs"):
        fit_sensitivity_figure(pd.DataFrame({"fit": ["all"], "run": [None], "multiplier": [math.nan]}))


def test_neighbour_agreement_figure_groups_bars_by_embedding():
    table = pd.DataFrame({"embedding": ["generated, initial"] * 2 + ["dense table, trained"] * 2,
                          "label": ["first digit", "token kind"] * 2, "lift": [5.0, 1.1, 1.0, 2.5]})
    fig = neighbour_agreement_figure(table)
    bars = [t for t in fig.data if t.type == "bar"]
    assert [b.name for b in bars] == ["generated, initial", "dense table, trained"]
    assert list(bars[1].y) == [1.0, 2.5] and list(bars[0].x) == ["first digit", "token kind"]
    assert fig.layout.barmode == "group"
    with pytest.raises(ValueError, match="lacks"):
        neighbour_agreement_figure(table.drop(columns="lift"))
