"""Figures of a study (``analysis.study.study_report``): pure functions from its dict to plotly Figures,
shared by the Scaling tab and notebook 05."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

from .style import ARCH_COLOURS, base_layout

RARE_COLOUR = "#7a4ea3"


def _zero_line(fig: go.Figure) -> None:
    fig.add_hline(y=0, line=dict(color="#888888", dash="dot", width=1))


def _spread_band(fig: go.Figure, spread: float | None, x0: float, x1: float) -> None:
    if spread:
        fig.add_shape(type="rect", x0=x0, x1=x1, y0=-spread, y1=spread, line_width=0,
                      fillcolor="rgba(120,120,120,0.15)", layer="below")
        fig.add_annotation(x=x1, y=spread, text=f"seed spread ±{spread:.3f}", showarrow=False,
                           xanchor="right", yanchor="bottom", font=dict(size=11, color="#555555"))


def _gap_trace(x: list, y: list, *, rare: bool, hover: str, name: str | None = None, text: list | None = None,
               labelled: bool = False, size: int | None = None) -> go.Scatter:
    """One gap line: all targets (Leviathan's colour) or rare targets (dashed). ``hover`` is the
    hover text before the line's name; ``labelled`` writes ``text`` beside the markers."""
    which = "rare targets" if rare else "all targets"
    marker = dict(color=RARE_COLOUR if rare else ARCH_COLOURS["leviathan"])
    if size is not None:
        marker["size"] = size
    extra: dict[str, Any] = dict(line=dict(dash="dash")) if rare else {}
    if text is not None:
        extra["text"] = text
    if labelled:
        extra["textposition"] = "top center"
    return go.Scatter(x=x, y=y, mode="lines+markers+text" if labelled else "lines+markers", name=name or which,
                      marker=marker, hovertemplate=f"{hover}<extra>{which}</extra>", **extra)


def study_gaps_figure(report: dict[str, Any]) -> go.Figure:
    """Leviathan minus dense validation loss at each width (isoparametric, and the revision's
    backbone where it ran), overall and on rare targets, with the seed spread as a band."""
    rows = [r for r in (report.get("sweeps", {}).get("main") or []) if r.get("gap_isoparam") is not None]
    fig = go.Figure()
    if rows:
        x = [r["dense"]["total"] for r in rows]
        labels = [r["size"] for r in rows]
        hover = "%{text}: %{y:+.3f} nats"
        fig.add_trace(_gap_trace(x, [r["gap_isoparam"] for r in rows], rare=False, hover=hover,
                                 name="isoparametric, all targets", text=labels, labelled=True, size=9))
        fig.add_trace(_gap_trace(x, [r["bucket_gaps_isoparam"]["rare"] for r in rows], rare=True, hover=hover,
                                 name="isoparametric, rare targets", text=labels, size=8))
        back = [r for r in rows if r.get("gap_backbone_vs_tied") is not None]
        if back:
            fig.add_trace(go.Scatter(x=[r["dense"]["total"] for r in back], y=[r["gap_backbone_vs_tied"] for r in back],
                                     mode="markers", name="identical backbone vs tied dense",
                                     marker=dict(symbol="diamond", size=10, color="#2f8f5b"),
                                     text=[r["size"] for r in back],
                                     hovertemplate="%{text}: %{y:+.3f} nats<extra>backbone</extra>"))
        _spread_band(fig, report.get("seed_spread_max"), min(x) / 1.15, max(x) * 1.15)
    _zero_line(fig)
    fig.update_xaxes(type="log")
    return base_layout(fig, "The gap at each width (below 0: Leviathan better)", "dense model's total parameters",
                       "Leviathan - dense val loss (nats)", height=420)


def gap_vs_tokens_figure(report: dict[str, Any]) -> go.Figure:
    """The isoparametric gap during training of the long runs, overall and on rare targets."""
    g = report.get("gap_vs_tokens") or {}
    pts = g.get("points") or []
    fig = go.Figure()
    if pts:
        x = [p["tokens"] for p in pts]
        hover = "%{x:,} tokens: %{y:+.3f}"
        fig.add_trace(_gap_trace(x, [p["gap"] for p in pts], rare=False, hover=hover))
        if any(p.get("rare_gap") is not None for p in pts):
            fig.add_trace(_gap_trace(x, [p.get("rare_gap") for p in pts], rare=True, hover=hover))
        _spread_band(fig, report.get("seed_spread_max"), min(x), max(x))
    _zero_line(fig)
    source = "" if g.get("sweep", "long") == "long" else ", main's runs: the 4x longer sweep has not run"
    return base_layout(fig, f"Does the gap grow with training? (width {str(g.get('size', '?'))[1:]}{source})",
                       "training tokens", "Leviathan - dense val loss (nats)", height=420)


def regime_map_figure(report: dict[str, Any]) -> go.Figure:
    """The isoparametric gap against the kept vocabulary at one width: when does replacing the table pay?"""
    reg = report.get("regime_map") or []
    fig = go.Figure()
    if reg:
        x = [r["vocab_size"] for r in reg]
        share = [f"table+head {r['dense']['table_head_share']:.0%}" for r in reg]
        fig.add_trace(_gap_trace(x, [r["gap"] for r in reg], rare=False, hover="%{x:,} ids: %{y:+.3f} (%{text})",
                                 text=share, labelled=True, size=9))
        fig.add_trace(_gap_trace(x, [r.get("rare_gap") for r in reg], rare=True, hover="%{x:,} ids: %{y:+.3f}"))
        _spread_band(fig, report.get("seed_spread_max"), min(x) / 1.3, max(x) * 1.3)
    _zero_line(fig)
    fig.update_xaxes(type="log")
    return base_layout(fig, "The regime map (width 64, same token budget)", "kept vocabulary (ids, + 1 unknown)",
                       "Leviathan - dense val loss (nats)", height=420)
