"""Parameter allocation figures: stacked blocks per model, embedding share vs size."""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go

from ..report import human
from .style import BLOCK_COLOURS, TOKENIZER_COLOURS, base_layout, plot_text

# The models of ``params.comparison`` a bar is drawn for, in order. ``leviathan_backbone`` is the
# same model as ``leviathan_isobody`` (measured against the tied dense model): drawn once.
MODEL_LABELS = {"dense": "dense", "dense_tied": "dense<br>tied", "leviathan_isobody": "Leviathan<br>same body",
                "leviathan_isoparam": "Leviathan<br>isoparametric"}
BLOCKS = ("embedding", "generator", "body", "head")


def compared_models(report: dict[str, dict]) -> list[str]:
    """The report's models worth a bar or a column: the tied dense model only when the dense
    model is untied (else it is the dense model itself), the isoparametric match only when
    one exists (else the report holds the reason, under ``error``)."""
    keys = []
    for k in MODEL_LABELS:
        entry = report.get(k)
        if entry is None or "error" in entry:
            continue
        if k == "dense_tied" and report.get("dense", {}).get("tied"):
            continue
        keys.append(k)
    return keys


def count_ticks(top: float, n: int = 5) -> tuple[list[float], list[str]]:
    """Round tick values from 0 to about ``top`` labelled like the text ('1.50M', '2.85B')."""
    if top <= 0:
        return [0.0], ["0"]
    raw = top / n
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    values = [i * step for i in range(int(top // step) + 1)]
    return values, [human(v) if v else "0" for v in values]


def allocation_bars(report: dict[str, dict]) -> go.Figure:
    """Stacked bars of embedding / generator / body / head (y in millions) from ``params.comparison``."""
    keys = compared_models(report)
    if not keys:
        raise ValueError(f"report has none of the models {list(MODEL_LABELS)}")
    x = [MODEL_LABELS[k] for k in keys]
    fig = go.Figure()
    for block in BLOCKS:
        counts = [report[k][block] for k in keys]
        shares = [100 * report[k][block] / report[k]["total"] for k in keys]
        fig.add_trace(go.Bar(
            name=block, x=x, y=[c / 1e6 for c in counts], marker_color=BLOCK_COLOURS[block],
            customdata=[[human(c), f"{c:,}", s] for c, s in zip(counts, shares)],
            hovertemplate=f"{block}: %{{customdata[0]}} = %{{customdata[1]}} (%{{customdata[2]:.1f}}%)<extra></extra>"))
    totals = [report[k]["total"] for k in keys]
    fig.add_trace(go.Scatter(
        x=x, y=[t / 1e6 for t in totals], mode="text", showlegend=False, textposition="top center",
        text=[f"{human(t)}, {report[k]['n_layers']} layers" for t, k in zip(totals, keys)],
        hoverinfo="skip"))
    fig.update_layout(barmode="stack")
    # y in millions (the notebooks read it so); the tick labels in the text's style
    top = max(totals) * 1.15
    ticks, labels = count_ticks(top)
    fig.update_yaxes(range=[0, top / 1e6], tickvals=[t / 1e6 for t in ticks], ticktext=labels)
    return base_layout(fig, "Where the parameters go", "model", "parameters")


def embedding_share_figure(curve: pd.DataFrame, paper: dict | None = None,
                           share: str = "embedding_share", user: dict | None = None) -> go.Figure:
    """Share of parameters in the input table (or ``share="vocab_share"``: table + head)
    against total size, one line per tokenizer, the ``paper-109m`` point marked, and
    ``user`` (a row like ``paper``: total and the share, e.g. the model chosen in a page)
    marked as "your model"."""
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
            customdata=[[human(t), d, n] for t, d, n in zip(rows["total"], rows["d_model"], rows["n_layers"])],
            hovertemplate="%{customdata[0]} params, width %{customdata[1]}, %{customdata[2]} layers: "
                          "%{y:.1f}%<extra></extra>"))
    for point, name, marker, position in ((paper, "paper-109m", dict(symbol="star", size=16, color="black"),
                                           "top right"),
                                          (user, "your model", dict(symbol="circle-open", size=18, color="#d1603d",
                                                                    line=dict(width=3)), "bottom right")):
        if point is None:
            continue
        label = plot_text(point.get("label", name))
        fig.add_trace(go.Scatter(
            name=label, x=[point["total"]], y=[100 * point[share]], mode="markers+text", marker=marker,
            text=[label], textposition=position, customdata=[[human(point["total"])]],
            hovertemplate=f"{label}: %{{customdata[0]}} params, %{{y:.1f}}%<extra></extra>"))
    fig.update_xaxes(type="log")
    fig.update_yaxes(range=[0, 100])
    label = "input table" if share == "embedding_share" else "input table + head"
    return base_layout(fig, f"Share of parameters in the {label}", "total parameters (dense model)",
                       f"{label} share (%)")
