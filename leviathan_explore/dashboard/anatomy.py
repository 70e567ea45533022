"""Tab 2, anatomy of a token: type text, pick one of its tokens, follow it through the
generator (``analysis.anatomy.trace_token``); its embedding is set beside the dense
model's table row as a distribution (the two models' dimensions do not correspond).

The embeddings come from the session's shared ``ExplorerState`` (the same source the
geometry tab shows). A source trained on a compacted vocabulary maps every token
outside it to one unknown id: the page counts, highlights and explains those.
"""

from __future__ import annotations

import html

import panel as pn
import param

from ..analysis.anatomy import bspline_curves, tokenize, trace_token
from ..data import UNK_TEXT
from ..viz.anatomy import (bspline_figure, codebook_figure, embedding_figure, mode_features_figure,
                           sigmoid_figure)
from ..viz.style import token_display
from .common import md_escape, message, one_line, text_pane
from .sources import UNTRAINED, UNTRAINED_LABEL
from .state import ExplorerState

DEFAULT_TEXT = "def embed(token_id): return table[token_id]  # 12345"
MAX_TOKENS = 256  # tokens traced and listed; longer text is cut, and the page says so
UNKNOWN_COLOUR = "#f3b6b6"


class AnatomyTab(pn.viewable.Viewer):
    """Text -> tokens -> one token's digits, codebook rows, sigmoid coordinates, active
    B-spline functions, mode features and embedding."""

    state = param.ClassSelector(class_=ExplorerState, doc="the session's shared state (embeddings, runs)")
    text = param.String(default=DEFAULT_TEXT)
    position = param.Integer(default=0, bounds=(0, None), doc="which token of the text")
    mode = param.Integer(default=0, bounds=(0, None), doc="mode whose coordinate the B-spline plot shows")
    coordinate = param.Integer(default=0, bounds=(0, None), doc="seed coordinate the B-spline plot shows")

    pieces = param.List(default=[], doc="the traced tokens of `text` (analysis.anatomy.TokenPiece)")
    n_tokens = param.Integer(default=0, doc="how many tokens the whole text has (pieces may be fewer)")
    trace = param.Parameter(default=None, doc="the TokenTrace of the chosen token")
    problem = param.String(default="", doc="why nothing can be traced (plain text)")

    def __init__(self, state: ExplorerState | None = None, **params):
        super().__init__(state=state if state is not None else ExplorerState(), **params)
        self.active = False
        has_trace = pn.bind(lambda t: t is not None, self.param.trace)
        self.notice = message(kind="warning")  # runs-directory problems
        self.notice.param.update(object=pn.bind(lambda p: md_escape("; ".join(p)), self.state.param.run_problems),
                                 visible=pn.bind(bool, self.state.param.run_problems))
        self.error = message()
        self.error.param.update(object=pn.bind(md_escape, self.param.problem),
                                visible=pn.bind(bool, self.param.problem))
        self.unknown_note = message(kind="info")
        self.unknown_note.param.update(object=self._notes, visible=pn.bind(lambda *_: bool(self._notes()),
                                                                           self.param.pieces, self.param.n_tokens))
        self.source_info = text_pane(self._source_text, css_classes=["anatomy-source"], sizing_mode="stretch_width")
        self.info = text_pane(self._info_text, css_classes=["anatomy-info"], sizing_mode="stretch_width")
        self.tokens_view = pn.pane.HTML(self._chips, sizing_mode="stretch_width", css_classes=["anatomy-tokens"])
        self.token_select = pn.widgets.Select(label="token to follow", options=self._token_options,
                                              value=self.param.position, width=280)
        self.token_select.param.watch(self._token_chosen, "value")
        views = {"codebook": self._codebook, "sigmoid": self._sigmoid, "bspline": self._bspline,
                 "features": self._features, "embedding": self._embedding}
        self.figs = {name: pn.pane.Plotly(view, sizing_mode="stretch_width", visible=has_trace)
                     for name, view in views.items()}
        f = self.figs
        self.body = pn.Column(self.source_info, self.unknown_note, self.tokens_view, self.info, f["codebook"],
                              f["sigmoid"], f["bspline"], f["features"], f["embedding"], sizing_mode="stretch_width",
                              loading=self.state.param.embeddings_loading)
        self.source_select = pn.widgets.Select(label="embeddings", options=self.state.param.source_options,
                                               value=self.state.param.source, width=280)
        self.source_select.param.watch(lambda e: self.state.choose_source(e.new), "value")

    # ---- lifecycle ---------------------------------------------------------------------
    def activate(self) -> None:
        """Each time the tab is shown: fresh run lists; the first time, load the source."""
        if self.state.embeddings_tab_shown(self):
            self._on_text()

    # ---- derived state -----------------------------------------------------------------------
    @param.depends("text", "state.embeddings", "state.embeddings_error", watch=True)
    def _on_text(self) -> None:
        """Tokenise (the source itself is loaded by the state, in the background)."""
        if not self.active:
            return
        src = self.state.embeddings
        if src is None:
            if self.state.embeddings_error:
                self._clear(f"Cannot load these embeddings: {self.state.embeddings_error}")
            return
        try:
            pieces = tokenize(src, self.text, max_tokens=MAX_TOKENS)
            n_tokens = len(src.encode(self.text))
        except ValueError as exc:
            self._clear(one_line(exc))
            return
        with param.parameterized.batch_call_watchers(self):
            self.param.update(pieces=pieces, n_tokens=n_tokens, problem="",
                              position=min(self.position, len(pieces) - 1))
        self._on_token()

    def _clear(self, problem: str) -> None:
        self.param.update(pieces=[], n_tokens=0, trace=None, problem=problem)

    def _token_chosen(self, event) -> None:
        if event.new is not None and event.new != self.position:
            self.position = int(event.new)

    @param.depends("position", watch=True)
    def _on_token(self) -> None:
        src, pieces = self.state.embeddings, self.pieces
        if not pieces or src is None:
            return
        piece = pieces[min(self.position, len(pieces) - 1)]
        try:
            t = trace_token(src, piece.token_id)
        except (ValueError, FileNotFoundError) as exc:
            self.param.update(trace=None, problem=one_line(exc))
            return
        self.param.mode.bounds = (0, t.sigmoid.shape[0] - 1)
        self.param.coordinate.bounds = (0, t.sigmoid.shape[1] - 1)
        self.param.update(trace=t, mode=min(self.mode, t.sigmoid.shape[0] - 1),
                          coordinate=min(self.coordinate, t.sigmoid.shape[1] - 1))

    # ---- views -----------------------------------------------------------------------------
    @param.depends("pieces")
    def _token_options(self) -> dict:
        return {f"{p.position}: {token_display(p.text)} (id {p.token_id})": p.position for p in self.pieces}

    @param.depends("pieces", "n_tokens")
    def _chips(self) -> str:
        return token_chips(self.pieces, self.n_tokens) if self.pieces else ""

    @param.depends("pieces")
    def _source_text(self) -> str:
        src = self.state.embeddings
        if src is None or not self.pieces:
            return ""
        return (f"**{md_escape(src.description)}**. Vocabulary {src.vocab_size:,}, digit base b = {src.base}, "
                f"k = {src.k}: id = " + " + ".join(f"d{j + 1}·{src.base}^{src.k - 1 - j}" for j in range(src.k)))

    @param.depends("pieces", "n_tokens")
    def _notes(self) -> str:
        src, pieces = self.state.embeddings, self.pieces
        if src is None or not pieces:
            return ""
        unknown = [p for p in pieces if p.text == UNK_TEXT]
        notes = []
        if unknown:
            notes.append(
                f"**{len(unknown)} of {len(pieces)} tokens are unknown to this source** (highlighted red): its "
                f"vocabulary keeps {src.vocab_size - 1:,} ids of its training corpus, and every other token becomes "
                f"the one unknown id {unknown[0].token_id} {md_escape(UNK_TEXT)}, which shares a single embedding. "
                f"Choose *{md_escape(UNTRAINED_LABEL)}* to follow every token of ordinary text.")
        if self.n_tokens > len(pieces):
            notes.append(f"**The text is cut:** it has {self.n_tokens:,} tokens; the first {len(pieces):,} are "
                         f"listed and can be followed.")
        return "\n\n".join(notes)

    @param.depends("trace")
    def _info_text(self) -> str:
        t = self.trace
        if t is None:
            return ""
        digits = ", ".join(str(int(d)) for d in t.digits)
        row = ("" if t.table_row is not None else
               " This source has no dense table row for this id, so stage 4 shows the generated embedding only.")
        unknown = (" It is the unknown id: every token outside this source's vocabulary gets exactly this "
                   "embedding." if t.text == UNK_TEXT else "")
        return (f"Token **{md_escape(token_display(t.text))}** is id **{t.token_id}** = digits ({digits}) in base "
                f"{t.base}.{unknown} Each digit picks one codebook row; the rows sum to the seed.{row}")

    @param.depends("trace")
    def _codebook(self):
        t = self.trace
        return None if t is None else codebook_figure(t.digits, t.codebook_rows, t.seed)

    @param.depends("trace")
    def _sigmoid(self):
        return None if self.trace is None else sigmoid_figure(self.trace.sigmoid)

    @param.depends("trace")
    def _features(self):
        return None if self.trace is None else mode_features_figure(self.trace.mode_features)

    @param.depends("trace")
    def _embedding(self):
        t = self.trace
        return None if t is None else embedding_figure(t.embedding, t.table_row)

    @param.depends("trace", "mode", "coordinate")
    def _bspline(self):
        t = self.trace
        if t is None:
            return None
        m, d = min(self.mode, t.sigmoid.shape[0] - 1), min(self.coordinate, t.sigmoid.shape[1] - 1)
        grid, basis = bspline_curves(t.n_knots)
        return bspline_figure(grid, basis, float(t.sigmoid[m, d]), t.active_index[m, d], t.active_weight[m, d])

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


def token_chips(pieces, n_tokens: int | None = None) -> str:
    """The tokens as coloured chips (HTML; every token's text escaped), unknown ids in red."""
    chips = "".join(
        f"<span title='id {p.token_id}{' (unknown)' if p.text == UNK_TEXT else ''}' "
        f"class='token-chip{' token-unknown' if p.text == UNK_TEXT else ''}' "
        f"style='display:inline-block;margin:2px;padding:2px 6px;border-radius:4px;background:"
        f"{UNKNOWN_COLOUR if p.text == UNK_TEXT else '#dbe7f3' if p.position % 2 == 0 else '#f6dccf'};"
        f"font-family:monospace;white-space:pre'>{html.escape(token_display(p.text)[1:-1])}</span>" for p in pieces)
    count = f"{len(pieces)} tokens" if not n_tokens or n_tokens == len(pieces) else \
        f"{len(pieces)} of {n_tokens} tokens"
    return f"<div>{count}: {chips}</div>"


__all__ = ["AnatomyTab", "DEFAULT_TEXT", "MAX_TOKENS", "UNTRAINED", "token_chips"]
