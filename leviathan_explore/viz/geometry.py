"""Embedding geometry figures: 2-D maps, nearest-neighbour tables, per-mode spreads, neighbour agreement."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

from .style import ARCH_COLOURS, KIND_COLOURS, SEQUENCE, base_layout, plot_text, token_display


def embedding_map_figure(xy: np.ndarray, colour: Sequence, *, colour_title: str, hover: Sequence[str],
                         categorical: bool, title: str, axis_titles: tuple[str, str] = ("axis 1", "axis 2"),
                         highlight: int | None = None) -> go.Figure:
    """Scatter of 2-D coordinates ``xy`` [n, 2] coloured by ``colour`` [n].

    categorical: one trace (and legend entry) per category; otherwise a continuous
    colour bar. ``highlight``: index of a point drawn as a large ring (the chosen token).
    """
    xy = np.asarray(xy, dtype=np.float64)
    if xy.ndim != 2 or xy.shape[1] != 2 or len(xy) != len(colour) or len(xy) != len(hover):
        raise ValueError(f"xy {xy.shape}, colour ({len(colour)}) and hover ({len(hover)}) must agree on n")
    hover = [plot_text(h) for h in hover]  # token texts may hold '<' or '&'
    fig = go.Figure()
    if categorical:
        cats = np.asarray([str(c) for c in colour])
        order = sorted(set(cats), key=lambda c: (not c.isdigit(), int(c) if c.isdigit() else 0, c))
        palette = SEQUENCE if len(order) <= len(SEQUENCE) else qualitative.Dark24
        for j, cat in enumerate(order):
            sel = np.flatnonzero(cats == cat)
            fig.add_trace(go.Scattergl(
                x=xy[sel, 0], y=xy[sel, 1], mode="markers", name=cat,
                marker=dict(size=5, opacity=0.75, color=KIND_COLOURS.get(cat, palette[j % len(palette)])),
                text=[hover[i] for i in sel], hovertemplate="%{text}<extra>" + cat + "</extra>"))
    else:
        values = np.asarray(colour, dtype=np.float64)
        fig.add_trace(go.Scattergl(
            x=xy[:, 0], y=xy[:, 1], mode="markers", name=colour_title, showlegend=False, text=hover,
            marker=dict(size=5, opacity=0.8, color=values, colorscale="Viridis",
                        colorbar=dict(title=colour_title)),
            hovertemplate="%{text}<br>" + colour_title + ": %{marker.color:.2f}<extra></extra>"))
    if highlight is not None:
        fig.add_trace(go.Scatter(x=[xy[highlight, 0]], y=[xy[highlight, 1]], mode="markers+text",
                                 name="chosen token", text=[hover[highlight]], textposition="top center",
                                 marker=dict(size=16, color="rgba(0,0,0,0)", line=dict(width=2, color="black"))))
    return base_layout(fig, title, axis_titles[0], axis_titles[1], height=440)


def neighbours_table_figure(query: str, generated: Sequence[tuple[str, float]],
                            dense: Sequence[tuple[str, float]] | None = None, typed: str | None = None) -> go.Figure:
    """Nearest neighbours of ``query`` in the generated space and in the dense table, side by side.

    generated / dense: [(token text, cosine similarity)], best first. Whitespace in a token
    is drawn visibly (a leading space as ␣), so ' the' and 'the' are told apart. typed: the
    text the query token was taken from, named in the title when it is more than that token.
    """
    def shown(text: str) -> str:
        return plot_text(token_display(text))

    n = max(len(generated), len(dense or ()))
    cols = [list(range(1, n + 1)), _pad([shown(t) for t, _ in generated], n),
            _pad([f"{s:.3f}" for _, s in generated], n)]
    headers = ["rank", "generated: token", "cosine"]
    if dense is not None:
        cols += [_pad([shown(t) for t, _ in dense], n), _pad([f"{s:.3f}" for _, s in dense], n)]
        headers += ["dense table: token", "cosine"]
    fig = go.Figure(go.Table(
        header=dict(values=headers, fill_color=["#eeeeee", ARCH_COLOURS["leviathan"], "#eeeeee",
                                               ARCH_COLOURS["dense"], "#eeeeee"][:len(headers)],
                    font=dict(color=["black", "white", "black", "white", "black"][:len(headers)])),
        cells=dict(values=cols, align="left")))
    source = f", the first token of {plot_text(chr(39) + typed + chr(39))}" if typed not in (None, query) else ""
    fig.update_layout(title=dict(text=f"Nearest neighbours of {shown(query)}{source} (cosine, centred)", x=0.01),
                      margin=dict(l=10, r=10, t=50, b=10), height=60 + 28 * (n + 1))
    return fig


def _pad(values: list, n: int) -> list:
    return values + [""] * (n - len(values))


def mode_spread_figure(spread: dict[str, list[float]]) -> go.Figure:
    """Per-mode box of sigmoid coordinates (from ``analysis.embedding_maps.mode_spread``) and the
    across-token standard deviation on a second axis."""
    modes = [f"mode {m}" for m in spread["mode"]]
    fig = go.Figure(go.Box(
        x=modes, q1=spread["p25"], median=spread["p50"], q3=spread["p75"], lowerfence=spread["p05"],
        upperfence=spread["p95"], name="u quantiles (5/25/50/75/95%)", marker_color=ARCH_COLOURS["leviathan"]))
    fig.add_trace(go.Scatter(x=modes, y=spread["token_std"], mode="markers+lines", yaxis="y2",
                             name="std across tokens", marker=dict(color="black", size=8)))
    base_layout(fig, "Spread of each mode's sigmoid coordinates", "mode", "u", height=340)
    # after base_layout, which titles every y axis
    fig.update_layout(yaxis=dict(range=[0, 1], title="u (sigmoid coordinate)"),
                      yaxis2=dict(overlaying="y", side="right", title="std across tokens", rangemode="tozero",
                                  showgrid=False))
    return fig


def neighbour_agreement_figure(table: pd.DataFrame) -> go.Figure:
    """How far nearest neighbours share a label beyond chance, per embedding and label.

    table: columns embedding (e.g. "generated, trained"), label (e.g. "first digit") and
    lift (``analysis.embedding_maps.neighbour_agreement``'s agreement / chance); 1 is chance.
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
