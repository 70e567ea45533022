"""Tab 4, embedding geometry: 2-D maps of generated and dense embeddings (PCA at once,
UMAP on demand in the background, cached), nearest neighbours, per-mode spreads.
All computation is ``analysis.geometry``."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import panel as pn
import param

from ..analysis.geometry import (first_digits, mode_spread, nearest_neighbours, pca_2d, token_kind, umap_2d)
from ..viz.geometry import embedding_map_figure, mode_spread_figure, neighbours_table_figure
from .common import message, one_line, run_in_background, set_figure, show
from .sources import DEMO, UNTRAINED, load_source, source_options

SPACES = {"generated (Leviathan)": "generated", "dense table": "dense"}
COLOURS = ("token kind", "frequency", "first digit")


def umap_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "leviathan-explore" / "umap"


@dataclass
class _Sample:
    """Everything the maps need for one (source, sample size): computed once."""

    ids: np.ndarray
    texts: list[str]
    kinds: list[str]
    digits: np.ndarray
    counts: np.ndarray | None
    vectors: dict[str, np.ndarray]   # space -> [n, D]
    sigmoid: np.ndarray              # [n, M, d_seed]


class GeometryTab(pn.viewable.Viewer):
    source = param.Selector(default=UNTRAINED, objects=[UNTRAINED])
    space = param.Selector(default="generated", objects=list(SPACES.values()))
    method = param.Selector(default="PCA", objects=["PCA", "UMAP"])
    colour_by = param.Selector(default="token kind", objects=list(COLOURS))
    sample_size = param.Integer(default=2000, bounds=(50, 5000))
    query = param.String(default=" return", doc="a token (its first token is used) whose neighbours to list")
    k = param.Integer(default=10, bounds=(1, 50))

    def __init__(self, runs_dir: str | Path = "runs", **params):
        super().__init__(**params)
        self.runs_dir = Path(runs_dir)
        self.active = False
        self.sample: _Sample | None = None
        self.umap_coords: dict[tuple, np.ndarray] = {}
        self.umap_running = False
        self.notice = message()       # runs-directory problems (persist)
        self.error = message()        # the source could not be loaded
        self.query_error = message()  # the neighbour query is unusable
        self.status = pn.pane.Markdown("", css_classes=["geometry-status"], sizing_mode="stretch_width")
        self.map = pn.pane.Plotly(None, sizing_mode="stretch_width", height=460, visible=False)
        self.neighbours = pn.pane.Plotly(None, sizing_mode="stretch_width", visible=False)
        self.spread = pn.pane.Plotly(None, sizing_mode="stretch_width", height=340, visible=False)
        self.source_select = pn.widgets.Select(label="embeddings", options={}, width=280)
        self.source_select.param.watch(lambda e: setattr(self, "source", e.new), "value")
        self.body = pn.Column(self.map, self.neighbours, self.spread, sizing_mode="stretch_width")
        self._generation = 0
        self.pending: threading.Thread | None = None  # the computation in flight (tests join it)
        self.umap_button = pn.widgets.Button(label="compute UMAP", color="primary", width=280)
        self.umap_button.on_click(self.start_umap)
        self.param.watch(self._on_source, ["source", "sample_size"])
        self.param.watch(self._on_view, ["space", "method", "colour_by"])
        self.param.watch(self._on_query, ["query", "k"])

    def activate(self) -> None:
        if self.active:
            return
        self.active = True
        options, problems = source_options(self.runs_dir)
        self.param.source.objects = list(options.values())
        self.source_select.options = options
        preferred = next((v for v in options.values() if v.startswith("run:")), DEMO if DEMO in options.values()
                         else UNTRAINED)
        with param.discard_events(self):
            self.source = preferred
        self.source_select.value = preferred
        show(self.notice, "; ".join(problems), "warning")
        self._on_source()

    # ---- data ----------------------------------------------------------------------------
    def _on_source(self, *events) -> None:
        """Load the source and embed the sample off the event loop (seconds for the o200k model)."""
        if not self.active:
            return
        self._generation += 1
        generation, key, n = self._generation, self.source, self.sample_size
        self.status.object = f"computing the embeddings of {n:,} ids..."
        self.body.loading = True
        self.pending = run_in_background(lambda: self._compute_sample(key, n),
                                         partial(self._sample_ready, generation))

    def _compute_sample(self, key: str, n: int):
        src = load_source(key, self.runs_dir)
        ids = src.sample(n)
        texts = src.texts(ids)
        vectors = {"generated": src.generated(ids)}
        dense = src.dense_rows(ids)
        if np.isfinite(dense).all():
            vectors["dense"] = dense
        return src, _Sample(ids=ids, texts=texts, kinds=[token_kind(t) for t in texts],
                            digits=first_digits(ids, src.base, src.k),
                            counts=None if src.counts is None else src.counts[ids],
                            vectors=vectors, sigmoid=src.sigmoid_coordinates(ids))

    def _sample_ready(self, generation: int, result) -> None:
        if generation != self._generation:  # a newer request superseded this one
            return
        self.body.loading = False
        if isinstance(result, BaseException):
            self.sample = None
            if not isinstance(result, (ValueError, FileNotFoundError, OSError)):
                result = ValueError(f"{type(result).__name__}: {result}")
            show(self.error, f"**{one_line(result)}**")
            self.status.object = ""
            for pane in (self.map, self.neighbours, self.spread):
                set_figure(pane, None)
            return
        show(self.error, "")
        self._src, self.sample = result
        self.status.object = f"{self._src.description}: {len(self.sample.ids):,} ids" + (
            "" if "dense" in self.sample.vectors else " (no dense table for this source: generated space only)")
        set_figure(self.spread, mode_spread_figure(mode_spread(self.sample.sigmoid)))
        self._on_view()
        self._on_query()

    def _space(self) -> str:
        return self.space if self.sample is not None and self.space in self.sample.vectors else "generated"

    def _on_view(self, *events) -> None:
        s = self.sample
        if s is None:
            return
        space = self._space()
        x = s.vectors[space]
        key = (self.source, self.sample_size, space)
        used = self.method
        if self.method == "UMAP" and key in self.umap_coords:
            xy, axes = self.umap_coords[key], ("UMAP 1", "UMAP 2")
        else:
            used = "PCA"
            if self.method == "UMAP":
                self.status.object = "UMAP not computed yet for this view: press **compute UMAP** (PCA shown)."
            xy, ratio = pca_2d(x)
            axes = (f"PC 1 ({100 * ratio[0]:.0f}% var)", f"PC 2 ({100 * ratio[1]:.0f}% var)")
        if self.colour_by == "token kind":
            colour, categorical, title = s.kinds, True, "token kind"
        elif self.colour_by == "first digit":
            base = int(s.digits.max()) + 1
            colour, categorical, title = s.digits.tolist(), base <= 24, "first digit"
        elif s.counts is not None:
            colour, categorical, title = np.log10(s.counts + 1.0), False, "log10(count + 1)"
        else:
            colour, categorical, title = s.ids.astype(float), False, "token id (no counts for this source)"
        hover = [f"{t!r} (id {i})" for t, i in zip(s.texts, s.ids)]
        label = next(k for k, v in SPACES.items() if v == space)
        set_figure(self.map, embedding_map_figure(
            xy, colour, colour_title=title, hover=hover, categorical=categorical, axis_titles=axes,
            title=f"{used} of {label} embeddings, coloured by {self.colour_by}", highlight=self._query_row()))

    def _query_id(self) -> int | None:
        src = getattr(self, "_src", None)
        if src is None:
            return None
        if self.query.strip() == "":
            raise ValueError("the neighbour query is empty or only whitespace: type a token, e.g. ' return'")
        ids = src.encode(self.query)
        if not ids:
            raise ValueError(f"{self.query!r} gives no tokens")
        return int(ids[0])

    def _query_row(self) -> int | None:
        try:
            qid = self._query_id()
        except ValueError:
            return None
        if qid is None or self.sample is None:
            return None
        rows = np.flatnonzero(self.sample.ids == qid)
        return int(rows[0]) if len(rows) else None

    def _on_query(self, *events) -> None:
        s = self.sample
        if s is None:
            return
        try:
            qid = self._query_id()
        except ValueError as exc:
            show(self.query_error, f"**{one_line(exc)}**")
            set_figure(self.neighbours, None)
            return
        show(self.query_error, "")
        src = self._src
        results = {}
        for space, vecs in s.vectors.items():
            row = self._query_row()
            if row is None:  # the query is outside the sample: compare it against the sample
                q = src.generated([qid]) if space == "generated" else src.dense_rows([qid])
                if not np.isfinite(q).all():
                    continue
                vecs, row = np.vstack([vecs, q]), len(vecs)
            texts = s.texts if row < len(s.texts) else s.texts + [src.text(qid)]
            results[space] = [(texts[i], sim) for i, sim in nearest_neighbours(vecs, row, self.k, centre=True)]
        set_figure(self.neighbours,
                   neighbours_table_figure(src.text(qid), results["generated"], results.get("dense")))
        if events:
            self._on_view()

    # ---- UMAP in the background ------------------------------------------------------------
    def start_umap(self, event=None) -> None:
        """Compute the UMAP of the current view off the event loop; the page stays live."""
        s = self.sample
        if s is None or self.umap_running:
            return
        space = self._space()
        key = (self.source, self.sample_size, space)
        x = s.vectors[space]
        self.umap_running = True
        self.umap_button.disabled = True
        self.status.object = f"computing UMAP of {len(x):,} ids in the background (the first one takes ~30 s)..."
        self.pending = run_in_background(lambda: umap_2d(x, cache_dir=umap_cache_dir()),
                                         partial(self._umap_done, key))

    def _umap_done(self, key, result) -> None:
        self.umap_running = False
        self.umap_button.disabled = False
        if isinstance(result, BaseException):
            show(self.error, f"**UMAP failed:** {one_line(result)}")
            return
        self.umap_coords[key] = result
        self.status.object = f"UMAP ready ({len(result):,} ids, cached)."
        if self.method == "UMAP":
            self._on_view()
        else:
            self.method = "UMAP"

    def __panel__(self):
        w = pn.widgets
        controls = pn.Column(
            self.source_select,
            w.IntInput.from_param(self.param.sample_size, label="sample size (ids)", width=280),
            w.RadioButtonGroup.from_param(self.param.space, label="space", options=SPACES, width=280),
            w.RadioButtonGroup.from_param(self.param.method, label="map", width=280),
            self.umap_button,
            w.Select.from_param(self.param.colour_by, label="colour by", width=280),
            w.TextInput.from_param(self.param.query, label="neighbours of (text)", width=280),
            w.IntSlider.from_param(self.param.k, label="neighbours", width=280),
            width=300)
        return pn.Row(controls, pn.Column(self.notice, self.error, self.query_error, self.status, self.body,
                                          sizing_mode="stretch_width"), sizing_mode="stretch_width")
