"""Training figures: loss curves of two architectures, losses by token-frequency bucket."""

from __future__ import annotations

from typing import Mapping, Sequence

import plotly.graph_objects as go

from .style import arch_colour, base_layout, plot_text

BUCKETS = ("frequent", "medium", "rare")


def loss_curves_figure(curves: Mapping[str, Mapping[str, Sequence[float]]], x_title: str = "step",
                       title: str = "Loss") -> go.Figure:
    """Train (thin) and validation (markers) loss per run; lower is better.

    curves: label -> {"train_x", "train_loss", "val_x", "val_loss"} (lists, any may be empty).
    Labels are legend entries: keep them short (the model, not the run's path) and name the
    run in ``title``. With no points the axes are hidden rather than drawn over a made-up range.
    """
    fig = go.Figure()
    for label, c in curves.items():
        colour = arch_colour(label)
        if len(c.get("train_x", ())):
            fig.add_trace(go.Scatter(x=list(c["train_x"]), y=list(c["train_loss"]), mode="lines",
                                     name=f"{plot_text(label)} train", line=dict(color=colour, width=1.5)))
        if len(c.get("val_x", ())):
            fig.add_trace(go.Scatter(x=list(c["val_x"]), y=list(c["val_loss"]), mode="lines+markers",
                                     name=f"{plot_text(label)} val", line=dict(color=colour, width=2, dash="dot"),
                                     marker=dict(size=7, symbol="diamond")))
    base_layout(fig, plot_text(title), x_title, "cross-entropy (nats/token, lower is better)")
    if not fig.data:
        fig.add_annotation(text="no steps yet", showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5,
                           font=dict(size=16, color="#888888"))
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)
    return fig


def bucket_losses_figure(buckets: Mapping[str, Mapping[str, float]]) -> go.Figure:
    """Validation loss on frequent / medium / rare target tokens, grouped by run."""
    fig = go.Figure()
    for label, b in buckets.items():
        present = [k for k in BUCKETS if b.get(k) is not None]
        fig.add_trace(go.Bar(name=plot_text(label), x=present, y=[float(b[k]) for k in present],
                             marker_color=arch_colour(label),
                             hovertemplate=f"{plot_text(label)} %{{x}}: %{{y:.3f}}<extra></extra>"))
    fig.update_layout(barmode="group")
    return base_layout(fig, "Validation loss by target-token frequency", "token frequency bucket",
                       "cross-entropy (nats/token, lower is better)", height=320)
