"""Tab 2, anatomy of a token: type text, pick one of its tokens, follow it through the
generator (``analysis.anatomy.trace_token``) beside its dense table row."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import panel as pn
import param

from ..analysis.anatomy import bspline_curves, tokenize, trace_token
from ..viz.anatomy import (bspline_figure, codebook_figure, embedding_figure, mode_features_figure,
                           sigmoid_figure)
from .common import message, one_line, run_in_background, set_figure, show
from .sources import UNTRAINED, load_source, source_options

DEFAULT_TEXT = "def embed(token_id): return table[token_id]  # 12345"


class AnatomyTab(pn.viewable.Viewer):
    """Text -> tokens -> one token's digits, codebook rows, sigmoid coordinates, active
    B-spline functions, mode features and embedding."""

    text = param.String(default=DEFAULT_TEXT)
    source = param.Selector(default=UNTRAINED, objects=[UNTRAINED])
    position = param.Integer(default=0, bounds=(0, None), doc="which token of the text")
    mode = param.Integer(default=0, bounds=(0, None), doc="mode whose coordinate the B-spline plot shows")
    coordinate = param.Integer(default=0, bounds=(0, None), doc="seed coordinate the B-spline plot shows")

    def __init__(self, runs_dir: str | Path = "runs", **params):
        super().__init__(**params)
        self.runs_dir = Path(runs_dir)
        self.active = False
        self.pieces: list = []
        self.trace = None
        self.notice = message()  # runs-directory problems (persist)
        self.error = message()
        self.source_info = pn.pane.Markdown("", css_classes=["anatomy-source"], sizing_mode="stretch_width")
        self.info = pn.pane.Markdown("", css_classes=["anatomy-info"], sizing_mode="stretch_width")
        self._src = None
        self._generation = 0
        self.pending = None  # the computation in flight, if any
        self.tokens_view = pn.pane.HTML("", sizing_mode="stretch_width", css_classes=["anatomy-tokens"])
        self.token_select = pn.widgets.Select(label="token to follow", options={}, width=280)
        self.token_select.param.watch(lambda e: setattr(self, "position", int(e.new)) if e.new is not None else None,
                                      "value")
        self.figs = {name: pn.pane.Plotly(None, sizing_mode="stretch_width", visible=False)
                     for name in ("codebook", "sigmoid", "bspline", "features", "embedding")}
        f = self.figs
        self.body = pn.Column(self.source_info, self.tokens_view, self.info, f["codebook"], f["sigmoid"],
                              f["bspline"], f["features"], f["embedding"], sizing_mode="stretch_width")
        self.param.watch(self._on_text, ["text", "source"])
        self.param.watch(self._on_token, ["position"])
        self.param.watch(self._on_coordinate, ["mode", "coordinate"])
        self.source_select = pn.widgets.Select(label="embeddings", options={}, width=280)
        self.source_select.param.watch(lambda e: setattr(self, "source", e.new), "value")

    # ---- lifecycle ---------------------------------------------------------------------
    def activate(self) -> None:
        """First time the tab is shown: list the sources and trace the default text."""
        if self.active:
            return
        self.active = True
        self.refresh_sources()
        self._on_text()

    def refresh_sources(self) -> None:
        options, problems = source_options(self.runs_dir)
        self.param.source.objects = list(options.values())
        self.source_select.options = options
        if self.source not in options.values():
            self.source = UNTRAINED
        self.source_select.value = self.source
        show(self.notice, "; ".join(problems), "warning")

    # ---- reactions -----------------------------------------------------------------------
    def _on_text(self, *events) -> None:
        """Load the source (seconds the first time, off the event loop), then tokenise and trace."""
        if not self.active:
            return
        self._generation += 1
        generation, key, text = self._generation, self.source, self.text
        self.body.loading = True
        self.pending = run_in_background(lambda: self._tokenize(key, text), partial(self._text_ready, generation))

    def _tokenize(self, key: str, text: str):
        src = load_source(key, self.runs_dir)
        return src, tokenize(src, text)

    def _text_ready(self, generation: int, result) -> None:
        if generation != self._generation:  # superseded by a newer text or source
            return
        self.body.loading = False
        if isinstance(result, BaseException):
            self.pieces, self.trace = [], None
            show(self.error, f"**{one_line(result)}**")
            self.tokens_view.object = ""
            self.info.object = ""
            self.token_select.options = {}
            for pane in self.figs.values():
                set_figure(pane, None)
            return
        show(self.error, "")
        self._src, self.pieces = result
        src = self._src
        self.source_info.object = (f"**{src.description}**. Vocabulary {src.vocab_size:,}, digit base b = "
                                   f"{src.base}, k = {src.k}: id = " + " + ".join(
                                       f"d{j + 1}·{src.base}^{src.k - 1 - j}" for j in range(src.k)))
        self.tokens_view.object = _token_chips(self.pieces)
        self.token_select.options = {f"{p.position}: {p.text!r} (id {p.token_id})": p.position for p in self.pieces}
        with param.discard_events(self):
            self.position = min(self.position, len(self.pieces) - 1)
        self.token_select.value = self.position
        self._on_token()

    def _on_token(self, *events) -> None:
        if not self.pieces:
            return
        piece = self.pieces[min(self.position, len(self.pieces) - 1)]
        try:
            self.trace = trace_token(self._src, piece.token_id)
        except (ValueError, FileNotFoundError) as exc:
            show(self.error, f"**{one_line(exc)}**")
            return
        t = self.trace
        self.param.mode.bounds = (0, t.sigmoid.shape[0] - 1)
        self.param.coordinate.bounds = (0, t.sigmoid.shape[1] - 1)
        self.mode = min(self.mode, t.sigmoid.shape[0] - 1)
        self.coordinate = min(self.coordinate, t.sigmoid.shape[1] - 1)
        set_figure(self.figs["codebook"], codebook_figure(t.digits, t.codebook_rows, t.seed))
        set_figure(self.figs["sigmoid"], sigmoid_figure(t.sigmoid))
        set_figure(self.figs["features"], mode_features_figure(t.mode_features))
        set_figure(self.figs["embedding"], embedding_figure(t.embedding, t.table_row))
        digits = ", ".join(str(int(d)) for d in t.digits)
        row = "" if t.table_row is not None else " (no dense row for this id in this source)"
        self.info.object = (f"Token **{t.text!r}** is id **{t.token_id}** = digits ({digits}) in base {t.base}. "
                            f"Each digit picks one codebook row; the rows sum to the seed{row}.")
        self._on_coordinate()

    def _on_coordinate(self, *events) -> None:
        t = self.trace
        if t is None:
            return
        m, d = min(self.mode, t.sigmoid.shape[0] - 1), min(self.coordinate, t.sigmoid.shape[1] - 1)
        grid, basis = bspline_curves(t.n_knots)
        set_figure(self.figs["bspline"], bspline_figure(grid, basis, float(t.sigmoid[m, d]), t.active_index[m, d],
                                                        t.active_weight[m, d]))

    # ---- layout --------------------------------------------------------------------------
    def __panel__(self):
        w = pn.widgets
        controls = pn.Column(
            self.source_select,
            w.TextAreaInput.from_param(self.param.text, label="text", height=90, width=280),
            self.token_select,
            w.IntSlider.from_param(self.param.mode, label="mode (B-spline plot)", width=280),
            w.IntSlider.from_param(self.param.coordinate, label="seed coordinate (B-spline plot)", width=280),
            width=300)
        return pn.Row(controls, pn.Column(self.notice, self.error, self.body, sizing_mode="stretch_width"),
                      sizing_mode="stretch_width")


def _token_chips(pieces) -> str:
    import html

    chips = "".join(
        f"<span title='id {p.token_id}' style='display:inline-block;margin:2px;padding:2px 6px;border-radius:4px;"
        f"background:{'#dbe7f3' if p.position % 2 == 0 else '#f6dccf'};font-family:monospace;white-space:pre'>"
        f"{html.escape(p.text)}</span>" for p in pieces)
    return f"<div>{len(pieces)} tokens: {chips}</div>"
