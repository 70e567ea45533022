"""Scaling figures: the dense power-law fit, Leviathan's effective sizes, the multiplier table,
the multipliers under each leave-one-out refit."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..analysis.interpretation import PAPER_MULTIPLIER_BAND, format_number
from .style import ARCH_COLOURS, SEQUENCE, base_layout, plot_text

__all__ = ["PAPER_MULTIPLIER_BAND", "fit_sensitivity_figure", "multiplier_table_figure", "scaling_figure"]


def _names(rows: pd.DataFrame):
    return None if "name" not in rows else [plot_text(n) for n in rows["name"]]


def scaling_figure(dense: pd.DataFrame, leviathan: pd.DataFrame, fit: Mapping[str, Sequence[float]] | None = None,
                   paper_band: Mapping[str, Sequence[float]] | None = None) -> go.Figure:
    """Validation loss against parameters on log-log axes.

    dense: columns params, loss, name; leviathan: params, loss, name and optionally
    effective_params (drawn as an arrow to the size a dense model would need).
    fit: {"params", "loss", "lo", "hi"} the dense fit and its band on a grid;
    paper_band: {"params", "lo", "hi"}: the loss a dense model of PAPER_MULTIPLIER_BAND times the
    Leviathan size reaches under the fit (the paper's reported multipliers).
    """
    fig = go.Figure()
    if fit is not None:
        x = list(fit["params"])
        if "lo" in fit and "hi" in fit:
            fig.add_trace(go.Scatter(x=x + x[::-1], y=list(fit["hi"]) + list(fit["lo"])[::-1], fill="toself",
                                     fillcolor="rgba(59,110,168,0.15)", line=dict(width=0), hoverinfo="skip",
                                     name="dense fit band"))
        fig.add_trace(go.Scatter(x=x, y=list(fit["loss"]), mode="lines", name="dense fit L(N)",
                                 line=dict(color=ARCH_COLOURS["dense"])))
    if paper_band is not None:
        x = list(paper_band["params"])
        fig.add_trace(go.Scatter(x=x + x[::-1], y=list(paper_band["hi"]) + list(paper_band["lo"])[::-1],
                                 fill="toself", fillcolor="rgba(209,96,61,0.12)", line=dict(width=0),
                                 hoverinfo="skip",
                                 name=f"paper: {PAPER_MULTIPLIER_BAND[0]}x-{PAPER_MULTIPLIER_BAND[1]}x dense"))
    if len(dense):
        fig.add_trace(go.Scatter(x=dense["params"], y=dense["loss"], mode="markers", name="dense runs",
                                 marker=dict(size=9, color=ARCH_COLOURS["dense"]), text=_names(dense),
                                 hovertemplate="%{text}: %{x:.3s} params, loss %{y:.3f}<extra></extra>"))
    if len(leviathan):
        fig.add_trace(go.Scatter(x=leviathan["params"], y=leviathan["loss"], mode="markers", name="Leviathan runs",
                                 marker=dict(size=11, symbol="diamond", color=ARCH_COLOURS["leviathan"]),
                                 text=_names(leviathan),
                                 hovertemplate="%{text}: %{x:.3s} params, loss %{y:.3f}<extra></extra>"))
        if "effective_params" in leviathan:
            eff = leviathan.dropna(subset=["effective_params"])
            if len(eff):
                fig.add_trace(go.Scatter(
                    x=eff["effective_params"], y=eff["loss"], mode="markers", name="Leviathan effective size",
                    marker=dict(size=11, symbol="diamond-open", color=ARCH_COLOURS["leviathan"]),
                    text=_names(eff),
                    hovertemplate="%{text}: behaves like %{x:.3s} dense params<extra></extra>"))
                for _, r in eff.iterrows():
                    fig.add_annotation(x=np.log10(r["effective_params"]), y=np.log10(r["loss"]),
                                       ax=np.log10(r["params"]), ay=np.log10(r["loss"]), xref="x", yref="y",
                                       axref="x", ayref="y", showarrow=True, arrowhead=2,
                                       arrowcolor=ARCH_COLOURS["leviathan"], text="")
    fig.update_xaxes(type="log")
    # the y range follows the runs and the fitted curve: a wide bootstrap band must not flatten them
    losses = [v for v in [*dense.get("loss", []), *leviathan.get("loss", []), *(fit["loss"] if fit else [])]
              if np.isfinite(v) and v > 0]
    if losses:
        lo, hi = np.log10(min(losses)), np.log10(max(losses))
        pad = max(0.02, 0.1 * (hi - lo))
        fig.update_yaxes(type="log", range=[lo - pad, hi + pad])
    else:
        fig.update_yaxes(type="log")
    return base_layout(fig, "Scaling: validation loss against parameters", "parameters N (log)",
                       "validation loss (log)", height=460)


def multiplier_table_figure(rows: pd.DataFrame) -> go.Figure:
    """Table of Leviathan runs: size, loss, effective size and N_eff / N with its interval.

    rows: columns name, params, loss, effective_params, multiplier, and optionally lo, hi.
    An interval end that the bootstrap left open is written "unbounded"; a multiplier that
    rounds to zero is "<0.01", not a misleading "0.00".
    """
    def fmt(v, spec):
        return "" if v is None or (isinstance(v, float) and not np.isfinite(v)) else format(v, spec)

    def end(v, upper: bool):
        if v is None or (isinstance(v, float) and not np.isfinite(v)):
            return "unbounded" if upper else "-"
        return format_number(float(v))

    n = len(rows)
    interval = [f"[{end(lo, False)}, {end(hi, True)}]" for lo, hi in zip(rows.get("lo", [None] * n),
                                                                          rows.get("hi", [None] * n))]
    cols = [[plot_text(x) for x in rows["name"]], [f"{p / 1e6:.2f}M" for p in rows["params"]],
            [fmt(v, ".3f") for v in rows["loss"]],
            [fmt(v / 1e6, ".2f") + "M" if np.isfinite(v) else "beyond the fit" for v in rows["effective_params"]],
            [format_number(v) + "x" if np.isfinite(v) else "-" for v in rows["multiplier"]], interval]
    fig = go.Figure(go.Table(
        header=dict(values=["run", "params N", "val loss", "effective N_eff", "N_eff / N", "95% interval"],
                    fill_color="#eeeeee"),
        cells=dict(values=cols, align="left"), columnwidth=[3, 1, 1, 1.2, 1, 1.3]))
    fig.update_layout(title=dict(text=f"Effective-parameter multipliers (paper: {PAPER_MULTIPLIER_BAND[0]}x-"
                                      f"{PAPER_MULTIPLIER_BAND[1]}x; above 1x: worth more than its size)", x=0.01),
                      margin=dict(l=10, r=10, t=50, b=10), height=90 + 28 * max(1, n))
    return fig


def fit_sensitivity_figure(sensitivity: pd.DataFrame) -> go.Figure:
    """Each Leviathan run's multiplier N_eff / N under each refit of the dense law.

    sensitivity: ``analysis.scaling.fit_sensitivity`` (columns fit, run, multiplier).
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
