"""Parameter allocation figures: stacked blocks per model, embedding share vs size."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from .style import BLOCK_COLOURS, TOKENIZER_COLOURS, base_layout

MODEL_LABELS = {"dense": "dense", "leviathan_isobody": "Leviathan<br>iso-body",
                "leviathan_isoparam": "Leviathan<br>isoparametric"}
BLOCKS = ("embedding", "generator", "body", "head")


def allocation_bars(report: dict[str, dict]) -> go.Figure:
    """Stacked bars of embedding / generator / body / head (millions) from ``params.comparison``."""
    keys = [k for k in MODEL_LABELS if k in report]
    if not keys:
        raise ValueError(f"report has none of the models {list(MODEL_LABELS)}")
    x = [MODEL_LABELS[k] for k in keys]
    fig = go.Figure()
    for block in BLOCKS:
        counts = [report[k][block] for k in keys]
        shares = [100 * report[k][block] / report[k]["total"] for k in keys]
        fig.add_trace(go.Bar(
            name=block, x=x, y=[c / 1e6 for c in counts], marker_color=BLOCK_COLOURS[block],
            customdata=list(zip(counts, shares)),
            hovertemplate=f"{block}: %{{customdata[0]:,}} (%{{customdata[1]:.1f}}%)<extra></extra>"))
    totals = [report[k]["total"] for k in keys]
    fig.add_trace(go.Scatter(
        x=x, y=[t / 1e6 for t in totals], mode="text", showlegend=False, textposition="top center",
        text=[f"{t / 1e6:.2f}M, {report[k]['n_layers']} layers" for t, k in zip(totals, keys)],
        hoverinfo="skip"))
    fig.update_layout(barmode="stack")
    fig.update_yaxes(range=[0, max(totals) / 1e6 * 1.15])
    return base_layout(fig, "Where the parameters go", "model", "parameters (millions)")


def embedding_share_figure(curve: pd.DataFrame, paper: dict | None = None,
                           share: str = "embedding_share") -> go.Figure:
    """Share of parameters in the input table (or ``share="vocab_share"``: table + head)
    against total size, one line per tokenizer, the ``paper-109m`` point marked."""
    if share not in ("embedding_share", "vocab_share"):
        raise ValueError(f"share={share!r} must be 'embedding_share' or 'vocab_share'")
    if curve.empty:
        raise ValueError("the curve has no rows")
    fig = go.Figure()
    for name, rows in curve.groupby("tokenizer", sort=False):
        rows = rows.sort_values("total")
        fig.add_trace(go.Scatter(
            name=f"{name} ({rows['vocab_size'].iloc[0]:,})", x=rows["total"], y=100 * rows[share],
            mode="lines+markers", line_color=TOKENIZER_COLOURS.get(name),
            customdata=rows[["d_model", "n_layers"]].to_numpy(),
            hovertemplate="%{x:.3s} params, width %{customdata[0]}, %{customdata[1]} layers: "
                          "%{y:.1f}%<extra></extra>"))
    if paper is not None:
        fig.add_trace(go.Scatter(
            name="paper-109m", x=[paper["total"]], y=[100 * paper[share]], mode="markers+text",
            marker=dict(symbol="star", size=16, color="black"), text=["paper-109m"],
            textposition="top right", hovertemplate="paper-109m: %{x:.3s} params, %{y:.1f}%<extra></extra>"))
    fig.update_xaxes(type="log")
    fig.update_yaxes(range=[0, 100])
    label = "input table" if share == "embedding_share" else "input table + head"
    return base_layout(fig, f"Share of parameters in the {label}", "total parameters (dense model)",
                       f"{label} share (%)")
