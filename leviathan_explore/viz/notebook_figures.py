"""Figures only the tutorial notebooks draw: pure functions from plain tables to a plotly Figure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..analysis.interpretation import PAPER_MULTIPLIER_BAND
from .style import ARCH_COLOURS, SEQUENCE, base_layout


def fit_sensitivity_figure(sensitivity: pd.DataFrame) -> go.Figure:
    """Each Leviathan run's multiplier N_eff / N under each refit of the dense law.

    sensitivity: ``analysis.tutorial.fit_sensitivity`` (columns fit, run, multiplier).
    The paper's multiplier band (interpretation.PAPER_MULTIPLIER_BAND) is shaded; a fit under
    which a run is beyond the fitted
    range (no number) is left out of its line and counted in the legend entry.
    """
    need = {"fit", "run", "multiplier"}
    if not need <= set(sensitivity.columns):
        raise ValueError(f"sensitivity table lacks {sorted(need - set(sensitivity.columns))}")
    rows = sensitivity.dropna(subset=["run"])
    if rows.empty:
        raise ValueError("the sensitivity table has no Leviathan runs")
    fits = list(dict.fromkeys(rows["fit"]))
    fig = go.Figure()
    lo, hi = PAPER_MULTIPLIER_BAND
    fig.add_hrect(y0=lo, y1=hi, fillcolor="rgba(209,96,61,0.12)", line_width=0)
    fig.add_trace(go.Scatter(x=[fits[0], fits[-1]], y=[lo, hi], mode="markers", marker=dict(opacity=0),
                             name=f"paper: {lo}x-{hi}x", hoverinfo="skip", showlegend=True,
                             legendgroup="paper"))
    fig.add_hline(y=1.0, line_dash="dot", line_color="grey")
    for j, (run, part) in enumerate(rows.groupby("run", sort=False)):
        part = part.set_index("fit").reindex(fits)
        values = part["multiplier"].to_numpy(float)
        missing = int((~np.isfinite(values)).sum())
        fig.add_trace(go.Scatter(
            x=fits, y=np.where(np.isfinite(values), values, None), mode="lines+markers",
            name=f"{run}" + (f" ({missing} fit(s) beyond range)" if missing else ""),
            line=dict(color=SEQUENCE[j % len(SEQUENCE)]), connectgaps=False,
            hovertemplate="%{x}: N_eff / N = %{y:.2f}<extra>" + str(run) + "</extra>"))
    fig.update_xaxes(tickangle=-30)
    return base_layout(fig, "Effective-parameter multiplier under each refit of the dense law",
                       "dense runs in the fit", "N_eff / N", height=420)


def neighbour_agreement_figure(table: pd.DataFrame) -> go.Figure:
    """How far nearest neighbours share a label beyond chance, per embedding and label.

    table: columns embedding (e.g. "generated, trained"), label (e.g. "first digit") and
    lift (``analysis.tutorial.neighbour_agreement``'s agreement / chance); 1 is chance.
    """
    need = {"embedding", "label", "lift"}
    if not need <= set(table.columns):
        raise ValueError(f"agreement table lacks {sorted(need - set(table.columns))}")
    if table.empty:
        raise ValueError("the agreement table has no rows")
    fig = go.Figure()
    for j, (name, part) in enumerate(table.groupby("embedding", sort=False)):
        colour = ARCH_COLOURS["dense"] if "table" in str(name) else SEQUENCE[(j + 1) % len(SEQUENCE)]
        fig.add_trace(go.Bar(name=str(name), x=part["label"], y=part["lift"], marker_color=colour,
                             hovertemplate="%{x}: %{y:.2f}x chance<extra>" + str(name) + "</extra>"))
    fig.add_hline(y=1.0, line_dash="dot", line_color="grey", annotation_text="chance",
                  annotation_position="top left")
    fig.update_layout(barmode="group")
    return base_layout(fig, "Do nearest neighbours share a label? (agreement / chance)", "label",
                       "agreement / chance", height=360)
