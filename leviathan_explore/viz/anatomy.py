"""Anatomy figures: one token's way through the generator's four stages."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from .style import ARCH_COLOURS, SEQUENCE, base_layout


def codebook_figure(digits: np.ndarray, codebook_rows: np.ndarray, seed: np.ndarray) -> go.Figure:
    """Stage 1: the k codebook rows C_j[i_j] [k, d_seed] and their sum, the seed z."""
    digits, rows, seed = np.asarray(digits), np.asarray(codebook_rows), np.asarray(seed)
    if rows.ndim != 2 or rows.shape[0] != len(digits) or rows.shape[1] != seed.shape[-1]:
        raise ValueError(f"codebook rows {rows.shape} must be [k={len(digits)}, d_seed={seed.shape[-1]}]")
    labels = [f"C{j + 1}[{int(d)}]" for j, d in enumerate(digits)] + ["seed z"]
    z = np.vstack([rows, seed[None]])
    lim = float(np.abs(z).max()) or 1.0
    fig = go.Figure(go.Heatmap(z=z, y=labels, x=np.arange(z.shape[1]), colorscale="RdBu", zmid=0,
                               zmin=-lim, zmax=lim, colorbar=dict(title="value"),
                               hovertemplate="%{y}, coordinate %{x}: %{z:.3f}<extra></extra>"))
    fig.update_yaxes(autorange="reversed")
    return base_layout(fig, "Stage 1: digits pick codebook rows; their sum is the seed",
                       "seed coordinate", "codebook row", height=260, legend=False)


def sigmoid_figure(sigmoid: np.ndarray) -> go.Figure:
    """Stage 2: each mode's sigmoid coordinates u [M, d_seed] in (0, 1)."""
    u = np.asarray(sigmoid)
    if u.ndim != 2:
        raise ValueError(f"sigmoid coordinates must be [M, d_seed], got {u.shape}")
    fig = go.Figure(go.Heatmap(z=u, y=[f"mode {m}" for m in range(u.shape[0])], x=np.arange(u.shape[1]),
                               zmin=0, zmax=1, colorscale="Viridis", colorbar=dict(title="u"),
                               hovertemplate="%{y}, coordinate %{x}: u=%{z:.3f}<extra></extra>"))
    fig.update_yaxes(autorange="reversed")
    return base_layout(fig, "Stage 2: sigmoid coordinates per mode", "seed coordinate", "mode", height=260,
                       legend=False)


def bspline_figure(grid_u: np.ndarray, basis: np.ndarray, u_value: float,
                   active_index: np.ndarray, active_weight: np.ndarray) -> go.Figure:
    """Stage 3a: the quadratic B-spline basis on [0, 1], the active functions at ``u_value`` marked.

    grid_u [n], basis [n, kappa]; active_index / active_weight [3]. The weights are listed
    in one box in the corner (labels beside the markers overlap where weights are close).
    """
    grid_u, basis = np.asarray(grid_u), np.asarray(basis)
    active = {int(i): float(w) for i, w in zip(active_index, active_weight) if w > 0}
    order = sorted(active)
    fig = go.Figure()
    for g in range(basis.shape[1]):
        on = g in active
        fig.add_trace(go.Scatter(
            x=grid_u, y=basis[:, g], mode="lines", showlegend=on, name=f"B{g}",
            hoverinfo=None if on else "skip",
            line=dict(width=3 if on else 1, color=SEQUENCE[order.index(g)] if on else "#cccccc")))
    fig.add_trace(go.Scatter(
        x=[u_value] * len(active), y=list(active.values()), mode="markers", name="active weights",
        text=[f"B{g}: {w:.2f}" for g, w in active.items()], hovertemplate="%{text}<extra></extra>",
        marker=dict(size=10, color=[SEQUENCE[order.index(g)] for g in active], line=dict(width=1, color="black"))))
    fig.add_vline(x=float(u_value), line_dash="dash", line_color="black")
    fig.add_annotation(text="<br>".join(f"B{g}(u) = {active[g]:.2f}" for g in order) + "<br>(sum 1)",
                       xref="paper", yref="paper", x=0.99, y=0.97, xanchor="right", yanchor="top",
                       showarrow=False, align="right", bgcolor="rgba(255,255,255,0.85)", bordercolor="#cccccc")
    return base_layout(fig, f"Stage 3: the {len(active)} active basis functions at u = {u_value:.3f}",
                       "u (sigmoid coordinate)", "basis value B_g(u)", height=300)


def mode_features_figure(mode_features: np.ndarray) -> go.Figure:
    """Stage 3b: the separable mode features Psi [M, r] (products over the seed coordinates)."""
    psi = np.asarray(mode_features)
    if psi.ndim != 2:
        raise ValueError(f"mode features must be [M, r], got {psi.shape}")
    fig = go.Figure(go.Heatmap(z=psi, y=[f"mode {m}" for m in range(psi.shape[0])], x=np.arange(psi.shape[1]),
                               colorscale="Cividis", colorbar=dict(title="Psi"),
                               hovertemplate="%{y}, rank %{x}: %{z:.4f}<extra></extra>"))
    fig.update_yaxes(autorange="reversed")
    return base_layout(fig, "Stage 3: mode features Psi (product over coordinates)", "rank component",
                       "mode", height=260, legend=False)


def embedding_figure(embedding: np.ndarray, table_row: np.ndarray | None = None) -> go.Figure:
    """Stage 4: the generated embedding e(i) [D] as its values sorted, beside the same id's
    dense table row sorted the same way.

    The table row belongs to another model, trained separately: its dimension j has
    nothing to do with the generator's dimension j, so drawing both against the
    dimension would suggest a correspondence that does not exist. Sorted values compare
    what does compare: the spread and size (the L2 norm is in each legend entry); the
    hover gives each value's dimension.
    """
    def sorted_trace(vector, name, colour):
        v = np.asarray(vector, dtype=float)
        order = np.argsort(v, kind="stable")
        x = (np.arange(len(v)) + 0.5) / len(v)
        return go.Scatter(x=x, y=v[order], mode="lines+markers", name=f"{name} (norm {np.linalg.norm(v):.3f})",
                          line_color=colour, marker_size=4, customdata=order,
                          hovertemplate="dimension %{customdata}: %{y:.4f}<extra></extra>")

    fig = go.Figure(sorted_trace(embedding, "generated e(i)", ARCH_COLOURS["leviathan"]))
    title = "Stage 4: the embedding entering the residual stream, values sorted"
    if table_row is not None:
        fig.add_trace(sorted_trace(table_row, "dense model's table row (another model)", ARCH_COLOURS["dense"]))
        title += " (the two models' dimensions do not correspond)"
    return base_layout(fig, title, "share of dimensions (values in increasing order)", "value", height=300)
