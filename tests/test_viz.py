"""Every figure function on small inputs: traces present, axis titles set, no NaN in the data."""

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from leviathan_explore.analysis.allocation import allocation_report, embedding_share_curve, paper_point
from leviathan_explore.analysis.anatomy import bspline_curves
from leviathan_explore.analysis.embedding_maps import mode_spread
from leviathan_explore.viz.allocation import allocation_bars, embedding_share_figure
from leviathan_explore.viz.anatomy import (bspline_figure, codebook_figure, embedding_figure,
                                           mode_features_figure, sigmoid_figure)
from leviathan_explore.viz.geometry import embedding_map_figure, mode_spread_figure, neighbours_table_figure
from leviathan_explore.viz.scaling import multiplier_table_figure, scaling_figure
from leviathan_explore.viz.training import bucket_losses_figure, loss_curves_figure

GEN = dict(k=3, d_seed=8, n_modes=2, n_knots=6, rank=4)


def _numbers(values):
    """The numeric entries of a trace array (plotly stores tuples, lists or numpy arrays)."""
    if values is None:
        return []
    arr = np.asarray(values, dtype=object).ravel()
    out = []
    for v in arr:
        if isinstance(v, (list, tuple, np.ndarray)):
            out.extend(_numbers(v))
        elif isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
            out.append(float(v))
    return out


def assert_clean(fig: go.Figure, *, axes: bool = True) -> None:
    """At least one trace; numeric data finite; axis titles present (for figures with axes)."""
    assert isinstance(fig, go.Figure)
    assert len(fig.data) >= 1
    for trace in fig.data:
        for attr in ("x", "y", "z", "q1", "median", "q3", "lowerfence", "upperfence"):
            values = _numbers(getattr(trace, attr, None))
            assert all(math.isfinite(v) for v in values), f"{trace.type}.{attr} holds NaN/inf"
        if isinstance(trace, go.Table):
            for col in trace.cells.values:
                assert all(not (isinstance(v, float) and math.isnan(v)) for v in col)
    if axes:
        assert fig.layout.xaxis.title.text, "x axis has no title"
        assert fig.layout.yaxis.title.text, "y axis has no title"
    assert fig.layout.title.text


def test_allocation_bars_stack_every_block_of_every_model():
    report = allocation_report(vocab_size=1000, d_model=64, n_layers=2, n_heads=4, tied=False, generator=GEN)
    fig = allocation_bars(report)
    assert_clean(fig)
    bars = [t for t in fig.data if isinstance(t, go.Bar)]
    assert [b.name for b in bars] == ["embedding", "generator", "body", "head"]
    dense_embedding = bars[0].y[0]
    assert dense_embedding == pytest.approx(report["dense"]["embedding"] / 1e6)
    assert bars[1].y[0] == 0 and bars[1].y[2] > 0  # no generator in dense, one in Leviathan


def test_embedding_share_figure_has_a_line_per_tokenizer_and_the_paper_point():
    curve = embedding_share_curve({"a": 1000, "b": 50_000}, ladder=((64, 2, 4), (128, 2, 4), (256, 4, 4)))
    fig = embedding_share_figure(curve, paper_point())
    assert_clean(fig)
    names = [t.name for t in fig.data]
    assert names[:2] == ["a (1,000)", "b (50,000)"] and names[-1] == "paper-109m"
    assert fig.layout.xaxis.type == "log"
    # shares fall as models grow at a fixed vocabulary
    ys = list(fig.data[1].y)
    assert ys == sorted(ys, reverse=True)
    with pytest.raises(ValueError, match="share"):
        embedding_share_figure(curve, share="bogus")


def test_anatomy_figures():
    rng = np.random.default_rng(0)
    assert_clean(codebook_figure(np.array([1, 0, 2]), rng.normal(size=(3, 8)), rng.normal(size=8)))
    fig = sigmoid_figure(rng.uniform(size=(2, 8)))
    assert_clean(fig)
    assert fig.data[0].zmin == 0 and fig.data[0].zmax == 1
    grid, basis = bspline_curves(6, 50)
    fig = bspline_figure(grid, basis, 0.4, np.array([1, 2, 3]), np.array([0.2, 0.7, 0.1]))
    assert_clean(fig)
    highlighted = [t for t in fig.data if t.showlegend and t.mode == "lines"]
    assert sorted(t.name for t in highlighted) == ["B1", "B2", "B3"]
    assert_clean(mode_features_figure(rng.normal(1, 0.1, size=(2, 4))))
    fig = embedding_figure(rng.normal(size=16), rng.normal(size=16))
    assert_clean(fig)
    assert len(fig.data) == 2
    assert len(embedding_figure(rng.normal(size=16), None).data) == 1
    with pytest.raises(ValueError):
        codebook_figure(np.array([1, 0]), rng.normal(size=(3, 8)), rng.normal(size=8))


def test_training_figures():
    curves = {"job/dense": {"train_x": [1, 2, 3], "train_loss": [8.0, 7.5, 7.0], "val_x": [3], "val_loss": [7.2]},
              "job/leviathan": {"train_x": [1, 2], "train_loss": [8.1, 7.9], "val_x": [], "val_loss": []}}
    fig = loss_curves_figure(curves)
    assert_clean(fig)
    assert [t.name for t in fig.data] == ["job/dense train", "job/dense val", "job/leviathan train"]
    assert fig.data[0].line.color != fig.data[2].line.color  # architectures are told apart
    empty = loss_curves_figure({})
    assert len(empty.data) == 0 and empty.layout.annotations[0].text == "no steps yet"
    fig = bucket_losses_figure({"dense": {"frequent": 3.0, "medium": 6.0, "rare": 8.0},
                                "leviathan": {"frequent": 3.1, "medium": 5.9, "rare": None}})
    assert_clean(fig)
    assert list(fig.data[1].x) == ["frequent", "medium"]


def test_geometry_figures():
    rng = np.random.default_rng(1)
    xy = rng.normal(size=(20, 2))
    hover = [f"t{i}" for i in range(20)]
    fig = embedding_map_figure(xy, ["word", "number"] * 10, colour_title="kind", hover=hover, categorical=True,
                               title="map", highlight=3)
    assert_clean(fig)
    assert {t.name for t in fig.data} == {"word", "number", "chosen token"}
    fig = embedding_map_figure(xy, rng.uniform(size=20), colour_title="log count", hover=hover,
                               categorical=False, title="map")
    assert_clean(fig)
    assert fig.data[0].marker.colorbar.title.text == "log count"
    with pytest.raises(ValueError):
        embedding_map_figure(xy, [1.0] * 19, colour_title="c", hover=hover, categorical=False, title="t")
    fig = neighbours_table_figure("x", [("a", 0.9), ("b", 0.5)], [("c", 0.7)])
    assert_clean(fig, axes=False)
    assert list(fig.data[0].cells.values[3]) == ["'c'", ""]
    fig = mode_spread_figure(mode_spread(rng.uniform(size=(30, 3, 4))))
    assert_clean(fig)
    assert fig.layout.yaxis2.title.text == "std across tokens"


def test_scaling_figures():
    dense = pd.DataFrame({"name": ["d1", "d2", "d3"], "params": [1e6, 2e6, 4e6], "loss": [5.0, 4.6, 4.3]})
    lev = pd.DataFrame({"name": ["l1"], "params": [1e6], "loss": [4.7], "effective_params": [1.8e6],
                        "multiplier": [1.8], "lo": [1.2], "hi": [np.nan]})
    grid = np.geomspace(5e5, 8e6, 10)
    fit = {"params": grid, "loss": 4 + grid ** -0.2, "lo": 3.9 + grid ** -0.2, "hi": 4.1 + grid ** -0.2}
    band = {"params": grid[:4], "lo": 4 + (2.11 * grid[:4]) ** -0.2, "hi": 4 + (1.47 * grid[:4]) ** -0.2}
    fig = scaling_figure(dense, lev, fit, band)
    assert_clean(fig)
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"
    lo, hi = fig.layout.yaxis.range  # follows the points, whatever the band does
    assert 10 ** lo < 4.3 and 10 ** hi > 5.0 and 10 ** hi < 6.0
    names = [t.name for t in fig.data]
    assert "dense fit L(N)" in names and "Leviathan effective size" in names
    assert any("1.47x-2.11x" in n for n in names)
    points_only = scaling_figure(dense, lev[["name", "params", "loss"]])
    assert [t.name for t in points_only.data] == ["dense runs", "Leviathan runs"]
    table = multiplier_table_figure(lev)
    assert_clean(table, axes=False)
    assert list(table.data[0].cells.values[4]) == ["1.80x"]
    assert list(table.data[0].cells.values[5]) == ["[1.20, unbounded]"]  # an open upper end is said, not blank


def test_neighbours_figure_colours_points_by_model_and_keeps_the_legend_neutral():
    from leviathan_explore.viz.neighbours import neighbours_figure
    rows = [{"size": "d32", "kind": kind, "arch": arch, "mean_gap": gap, "gap_range": [gap - 0.02, gap + 0.03],
             "mean_rare_gap": gap + 0.1}
            for kind, arch, gap in [("leviathan isoparam", "leviathan", 0.2), ("hashed isoparam", "hashed", 0.21),
                                    ("codebooks isoparam", "codebooks", 0.5)]]
    rows.append({"size": "d32", "kind": "dense", "arch": "dense", "mean_gap": 0.0, "gap_range": [0, 0]})
    fig = neighbours_figure({"rows": rows})
    shown = [t for t in fig.data if t.showlegend is not False]
    assert sorted(t.name for t in shown) == ["all targets", "rare targets"]
    assert fig.layout.yaxis.type == "category"  # the legend-only trace must not make the axis numeric
    points = next(t for t in fig.data if t.showlegend is False)
    assert len(points.x) == 3 and len(set(points.marker.color)) == 3  # dense is the zero line, not a point
    assert next(t for t in shown if t.name == "all targets").marker.color == "#555555"
