"""Tab 4, embedding geometry: 2-D maps of generated and dense embeddings (PCA at once,
UMAP on demand in the background, cached), nearest neighbours, per-mode spreads.
All computation is ``analysis.embedding_maps``; the source is the session's shared
``ExplorerState`` (the one the anatomy tab shows)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import panel as pn
import param

from ..analysis.embedding_maps import first_digits, mode_spread, nearest_neighbours, pca_2d, token_kind, umap_2d
from ..viz.geometry import embedding_map_figure, mode_spread_figure, neighbours_table_figure
from ..viz.style import token_display
from .common import LatestRequest, NumberField, labelled, md_escape, message, one_line, text_pane
from .state import ExplorerState

SPACES = {"generated (Leviathan)": "generated", "dense table": "dense"}
COLOURS = ("token kind", "frequency", "first digit")
SAMPLE_RANGE = (50, 5000)
# What a UMAP of the demo's 1,536 ids costs on 2 cores (s): the first one of a server process also
# compiles umap-learn's numba code (16 s measured on an idle core, 61 s on a busy server);
# later ones reuse it (5 s idle).
UMAP_FIRST_S, UMAP_LATER_S = (15, 70), (5, 20)


def umap_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "leviathan-explore" / "umap"


_UMAP_DONE_IN_PROCESS = False  # whether this server process has compiled UMAP's code yet


@dataclass
class _Sample:
    """Everything the maps need for one (source, sample size): computed once."""

    source: object
    ids: np.ndarray
    texts: list[str]
    kinds: list[str]
    digits: np.ndarray
    counts: np.ndarray | None
    vectors: dict[str, np.ndarray]   # space -> [n, D]
    sigmoid: np.ndarray              # [n, M, d_seed]


def compute_sample(src, n: int) -> _Sample:
    ids = src.sample(n)
    texts = src.texts(ids)
    vectors = {"generated": src.generated(ids)}
    dense = src.dense_rows(ids)
    if np.isfinite(dense).all():
        vectors["dense"] = dense
    return _Sample(source=src, ids=ids, texts=texts, kinds=[token_kind(t) for t in texts],
                   digits=first_digits(ids, src.base, src.k),
                   counts=None if src.counts is None else src.counts[ids],
                   vectors=vectors, sigmoid=src.sigmoid_coordinates(ids))


class GeometryTab(pn.viewable.Viewer):
    state = param.ClassSelector(class_=ExplorerState, doc="the session's shared state (embeddings, runs)")
    space = param.Selector(default="generated", objects=list(SPACES.values()))
    method = param.Selector(default="PCA", objects=["PCA", "UMAP"])
    colour_by = param.Selector(default="token kind", objects=list(COLOURS))
    sample_size = param.Integer(default=2000, bounds=SAMPLE_RANGE)
    query = param.String(default=" return", doc="a token (its first token is used) whose neighbours to list")
    k = param.Integer(default=10, bounds=(1, 50))

    sample = param.Parameter(default=None, doc="the _Sample of the current source and sample size")
    sample_error = param.String(default="")
    umap_coords = param.Dict(default={}, doc="(source, sample size, space) -> UMAP coordinates")
    umap_started = param.Number(default=None, allow_None=True, doc="monotonic time the running UMAP began")
    umap_error = param.String(default="")
    tick = param.Integer(default=0, doc="advanced every second while a UMAP runs (the elapsed time)")

    def __init__(self, state: ExplorerState | None = None, **params):
        super().__init__(state=state if state is not None else ExplorerState(), **params)
        self.active = False
        self.sample_field = NumberField(self, "sample_size", "sample size (ids)", low=SAMPLE_RANGE[0],
                                        high=SAMPLE_RANGE[1], reason="a map of 5,000 ids is drawn in a second; "
                                        "UMAP time grows with the ids")
        self._sampler = LatestRequest("sample", on_error=lambda e: setattr(self, "sample_error", one_line(e)))
        self._umapper = LatestRequest("umap", on_error=lambda e: setattr(self, "umap_error", one_line(e)))
        self._ticker = None
        self.notice = message(kind="warning")
        self.notice.param.update(object=pn.bind(lambda p: md_escape("; ".join(p)), self.state.param.run_problems),
                                 visible=pn.bind(bool, self.state.param.run_problems))
        self.error = message()
        self.error.param.update(object=self._error_text, visible=pn.bind(lambda *_: bool(self._error_text()),
                                                                           self.param.sample_error,
                                                                           self.param.umap_error,
                                                                           self.state.param.embeddings_error))
        self.query_error = message()
        self.query_error.param.update(object=self._query_problem,
                                      visible=pn.bind(lambda *_: bool(self._query_problem()), self.param.query,
                                                      self.param.sample))
        self.status = text_pane(self._status, css_classes=["geometry-status"], sizing_mode="stretch_width")
        has_sample = pn.bind(lambda s: s is not None, self.param.sample)
        self.map = pn.pane.Plotly(self._map, sizing_mode="stretch_width", height=460, visible=has_sample)
        self.neighbours = pn.pane.Plotly(self._neighbours, sizing_mode="stretch_width",
                                         visible=pn.bind(lambda *_: self._neighbours() is not None,
                                                         self.param.sample, self.param.query, self.param.k))
        self.spread = pn.pane.Plotly(self._spread, sizing_mode="stretch_width", height=340, visible=has_sample)
        self.body = pn.Column(self.map, self.neighbours, self.spread, sizing_mode="stretch_width")
        self.source_select = pn.widgets.Select(label="embeddings", options=self.state.param.source_options,
                                               value=self.state.param.source, width=280)
        self.source_select.param.watch(lambda e: self.state.choose_source(e.new), "value")
        self.umap_button = pn.widgets.Button(label="compute UMAP", color="primary", width=280,
                                             disabled=pn.bind(lambda s, t: s is None or t is not None,
                                                              self.param.sample, self.param.umap_started))
        self.umap_button.on_click(self.start_umap)

    @property
    def pending(self):
        """The computation in flight, if any (tests join it)."""
        return self._umapper.thread if self._umapper.busy else self._sampler.thread

    def activate(self) -> None:
        """Each time the tab is shown: fresh run lists; the first time, load the source and sample."""
        if self.state.embeddings_tab_shown(self):
            self._on_source()

    # ---- data ----------------------------------------------------------------------------
    @param.depends("state.embeddings", "sample_size", watch=True)
    def _on_source(self) -> None:
        """Embed the sample off the event loop (seconds for the o200k model)."""
        src = self.state.embeddings
        if not self.active or src is None:
            return
        n = self.sample_size
        self.param.update(sample_error="", umap_error="")
        self.body.loading = True
        self._sampler.submit(lambda: compute_sample(src, n), self._sample_ready)

    def _sample_ready(self, result) -> None:
        self.body.loading = False
        if isinstance(result, BaseException):
            if not isinstance(result, (ValueError, FileNotFoundError, OSError)):
                result = ValueError(f"{type(result).__name__}: {result}")
            self.param.update(sample=None, sample_error=one_line(result))
            return
        self.param.update(sample=result, sample_error="")

    def _space(self) -> str:
        return self.space if self.sample is not None and self.space in self.sample.vectors else "generated"

    def _umap_key(self) -> tuple:
        return (self.state.source, self.sample_size, self._space())

    # ---- views -----------------------------------------------------------------------------
    @param.depends("sample_error", "umap_error", "state.embeddings_error")
    def _error_text(self) -> str:
        if self.state.embeddings_error:
            return f"**Cannot load these embeddings:** {md_escape(self.state.embeddings_error)}"
        if self.sample_error:
            return f"**{md_escape(self.sample_error)}**"
        if self.umap_error:
            return f"**UMAP failed:** {md_escape(self.umap_error)}"
        return ""

    @param.depends("sample", "method", "space", "umap_coords", "umap_started", "tick", "state.embeddings_loading")
    def _status(self) -> str:
        if self.state.embeddings_loading:
            return "loading the embeddings..."
        s = self.sample
        if s is None:
            return ""
        text = f"{md_escape(s.source.description)}: {len(s.ids):,} ids" + (
            "" if "dense" in s.vectors else " (no dense table for this source: generated space only)")
        if self.umap_started is not None:
            elapsed = time.monotonic() - self.umap_started
            expect = UMAP_LATER_S if _UMAP_DONE_IN_PROCESS else UMAP_FIRST_S
            why = "" if _UMAP_DONE_IN_PROCESS else " (the first UMAP of this server also compiles its code)"
            text += (f". Computing UMAP of {len(s.ids):,} ids in the background: {elapsed:.0f} s so far, "
                     f"usually {expect[0]}-{expect[1]} s in all on 2 cores{why}; the page stays usable.")
        elif self.method == "UMAP" and self._umap_key() not in self.umap_coords:
            text += ". UMAP not computed yet for this view: press **compute UMAP** (PCA shown)."
        return text

    def _query_id(self) -> int:
        src = self.sample.source
        if self.query.strip() == "":
            raise ValueError("the neighbour query is empty or only whitespace: type a token, e.g. ' return'")
        ids = src.encode(self.query)
        if not ids:
            raise ValueError(f"{self.query!r} gives no tokens")
        return int(ids[0])

    @param.depends("query", "sample")
    def _query_problem(self) -> str:
        if self.sample is None:
            return ""
        try:
            self._query_id()
        except ValueError as exc:
            return f"**{md_escape(one_line(exc))}**"
        return ""

    def _query_row(self) -> int | None:
        try:
            qid = self._query_id()
        except ValueError:
            return None
        rows = np.flatnonzero(self.sample.ids == qid)
        return int(rows[0]) if len(rows) else None

    @param.depends("sample", "space", "method", "colour_by", "query", "umap_coords")
    def _map(self):
        s = self.sample
        if s is None:
            return None
        space = self._space()
        x = s.vectors[space]
        used = self.method
        if self.method == "UMAP" and self._umap_key() in self.umap_coords:
            xy, axes = self.umap_coords[self._umap_key()], ("UMAP 1", "UMAP 2")
        else:
            used = "PCA"
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
        hover = [f"{token_display(t)} (id {i})" for t, i in zip(s.texts, s.ids)]
        label = next(k for k, v in SPACES.items() if v == space)
        return embedding_map_figure(
            xy, colour, colour_title=title, hover=hover, categorical=categorical, axis_titles=axes,
            title=f"{used} of {label} embeddings, coloured by {self.colour_by}", highlight=self._query_row())

    @param.depends("sample", "query", "k")
    def _neighbours(self):
        s = self.sample
        if s is None:
            return None
        try:
            qid = self._query_id()
        except ValueError:
            return None
        src = s.source
        results = {}
        row = self._query_row()
        for space, vecs in s.vectors.items():
            r = row
            texts = s.texts
            if r is None:  # the query is outside the sample: compare it against the sample
                q = src.generated([qid]) if space == "generated" else src.dense_rows([qid])
                if not np.isfinite(q).all():
                    continue
                vecs, r, texts = np.vstack([vecs, q]), len(vecs), s.texts + [src.text(qid)]
            results[space] = [(texts[i], sim) for i, sim in nearest_neighbours(vecs, r, self.k, centre=True)]
        if "generated" not in results:
            return None
        return neighbours_table_figure(src.text(qid), results["generated"], results.get("dense"), typed=self.query)

    @param.depends("sample")
    def _spread(self):
        return None if self.sample is None else mode_spread_figure(mode_spread(self.sample.sigmoid))

    # ---- UMAP in the background ------------------------------------------------------------
    def start_umap(self, event=None) -> None:
        """Compute the UMAP of the current view off the event loop; the page stays live and
        shows the time elapsed against what to expect."""
        s = self.sample
        if s is None or self.umap_started is not None:
            return
        key = self._umap_key()
        x = s.vectors[key[2]]
        self.param.update(umap_started=time.monotonic(), umap_error="")
        if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
            self._ticker = pn.state.add_periodic_callback(lambda: setattr(self, "tick", self.tick + 1), period=1000)
        self._umapper.submit(lambda: umap_2d(x, cache_dir=umap_cache_dir()), lambda r: self._umap_done(key, r))

    def _umap_done(self, key, result) -> None:
        global _UMAP_DONE_IN_PROCESS
        if self._ticker is not None:
            self._ticker.stop()
            self._ticker = None
        self.umap_started = None
        if isinstance(result, BaseException):
            self.umap_error = one_line(result)
            return
        _UMAP_DONE_IN_PROCESS = True
        with param.parameterized.batch_call_watchers(self):
            self.umap_coords = {**self.umap_coords, key: result}
            self.method = "UMAP"

    def shutdown(self) -> None:
        if self._ticker is not None:
            self._ticker.stop()
            self._ticker = None

    def __panel__(self):
        w = pn.widgets
        controls = pn.Column(
            self.source_select,
            self.sample_field,
            labelled("space", w.RadioButtonGroup.from_param(self.param.space, label="space", options=SPACES,
                                                            width=280)),
            labelled("map", w.RadioButtonGroup.from_param(self.param.method, label="map", width=280)),
            self.umap_button,
            w.Select.from_param(self.param.colour_by, label="colour by", width=280),
            w.TextInput.from_param(self.param.query, label="neighbours of (text)", width=280),
            w.IntSlider.from_param(self.param.k, label="neighbours", width=280),
            width=300)
        return pn.Row(controls, pn.Column(self.notice, self.error, self.query_error, self.status, self.body,
                                          sizing_mode="stretch_width"), sizing_mode="stretch_width")
