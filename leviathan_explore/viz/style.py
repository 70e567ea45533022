"""Shared colours and layout defaults, so every figure reads the same way."""

from __future__ import annotations

import plotly.graph_objects as go

ARCH_COLOURS = {"dense": "#3b6ea8", "leviathan": "#d1603d"}
BLOCK_COLOURS = {"embedding": "#8c9bb5", "generator": "#d1603d", "body": "#3b6ea8", "head": "#b7b7b7"}
TOKENIZER_COLOURS = {"gpt2": "#6a9f58", "cl100k_base": "#967bb6", "o200k_base": "#d1603d"}
KIND_COLOURS = {"word": "#3b6ea8", "number": "#d1603d", "punctuation": "#6a9f58",
                "whitespace": "#b7b7b7", "code": "#967bb6", "other": "#e3b23c"}
SEQUENCE = ["#3b6ea8", "#d1603d", "#6a9f58", "#967bb6", "#e3b23c", "#5fa2a8", "#b55d8c", "#7f7f7f"]


def arch_colour(label: str) -> str:
    """Colour of a run label: Leviathan runs orange, dense runs blue."""
    return ARCH_COLOURS["leviathan" if "leviathan" in label.lower() else "dense"]


def base_layout(fig: go.Figure, title: str, x_title: str, y_title: str, height: int = 380,
                legend: bool = True) -> go.Figure:
    # title in the top margin, legend just above the plot area: long legends wrap without covering the title
    fig.update_layout(title=dict(text=title, x=0.01, xanchor="left", y=0.98, yanchor="top"),
                      template="plotly_white", height=height,
                      margin=dict(l=60, r=20, t=90 if legend else 50, b=50),
                      legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="right", x=1.0))
    fig.update_xaxes(title_text=x_title)
    fig.update_yaxes(title_text=y_title)
    return fig


def plot_text(text) -> str:
    """``text`` safe for a plotly title, hover label or table cell: plotly reads a few HTML tags
    in these, so ``<``, ``>`` and ``&`` are written as entities (plotly shows them as typed)."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


WHITESPACE_SIGNS = {" ": "\u2423", "\n": "\u21b5", "\t": "\u2192", "\r": "\u240d"}


def token_display(text: str) -> str:
    """A token's text with its whitespace made visible (space ␣, newline ↵, tab →), quoted:
    ``' return'`` shows as ``'␣return'`` instead of a blank-looking ``' return'``."""
    return "'" + "".join(WHITESPACE_SIGNS.get(c, c) for c in text) + "'"
