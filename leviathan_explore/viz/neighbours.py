"""The neighbours comparison as a figure (``analysis.neighbours.neighbours_report``): each model's gap
to the dense model of its size, the range over seeds as an error bar, all and rare targets."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

from .style import ARCH_COLOURS, SEQUENCE, base_layout, plot_text

RARE_COLOUR = "#7a4ea3"


def neighbours_figure(report: dict[str, Any]) -> go.Figure:
    """One row per model (size and kind), the mean gap over seeds with its seed range."""
    rows = [r for r in report.get("rows") or [] if r["kind"] != "dense" and r.get("mean_gap") is not None]
    rows.sort(key=lambda r: (r["size"], r["mean_gap"]))
    labels = [plot_text(f"{r['size']} {r['kind']}") for r in rows]
    fig = go.Figure()
    if rows:
        lo = [r["mean_gap"] - r["gap_range"][0] for r in rows]
        hi = [r["gap_range"][1] - r["mean_gap"] for r in rows]
        colours = [ARCH_COLOURS["leviathan"] if r["arch"] == "leviathan" else SEQUENCE[2 + i % 5]
                   for i, r in enumerate(rows)]
        fig.add_trace(go.Scatter(x=[r["mean_gap"] for r in rows], y=labels, mode="markers", name="all targets",
                                 legendgroup="all", showlegend=False, marker=dict(size=10, color=colours),
                                 error_x=dict(type="data", symmetric=False, array=hi, arrayminus=lo),
                                 hovertemplate="%{y}: %{x:+.3f} nats (mean over seeds)<extra>all targets</extra>"))
        rare = [r for r in rows if r.get("mean_rare_gap") is not None]
        fig.add_trace(go.Scatter(x=[r["mean_rare_gap"] for r in rare],
                                 y=[plot_text(f"{r['size']} {r['kind']}") for r in rare], mode="markers",
                                 name="rare targets", marker=dict(size=8, symbol="diamond-open", color=RARE_COLOUR),
                                 hovertemplate="%{y}: %{x:+.3f} nats<extra>rare targets</extra>"))
        # the legend's marker in a neutral grey: the points' own colours tell the models apart
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name="all targets",
                                 marker=dict(size=10, color="#555555"), legendgroup="all"))
    fig.add_vline(x=0, line=dict(color="#888888", dash="dot", width=1))
    fig.update_yaxes(type="category", categoryorder="array", categoryarray=labels)
    return base_layout(fig, "Each representation against the dense model of its size (left of 0: better)",
                       "model - dense validation loss (nats; bars: range over seeds)", "",
                       height=max(320, 28 * len(rows) + 140))
