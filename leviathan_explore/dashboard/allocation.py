"""Tab 1, parameter allocation: where the parameters of a dense model and its Leviathan
counterparts go. Every number comes from ``params.comparison`` (via
``analysis.allocation``); this module only wires widgets to it."""

from __future__ import annotations

import functools

import panel as pn
import param

from ..analysis.allocation import allocation_report, embedding_share_curve, paper_point
from ..config import TOKENIZER_VOCAB
from ..report import human
from ..viz.allocation import allocation_bars, embedding_share_figure
from .common import message, one_line, set_figure, show

CUSTOM = "custom"
TOKENIZER_OPTIONS = {f"{name} ({vocab:,})": name for name, vocab in TOKENIZER_VOCAB.items()} | {CUSTOM: CUSTOM}
TABLE_CSS = ("table { border-collapse: collapse; font-size: 14px; } "
             "td, th { padding: 4px 12px; border-bottom: 1px solid #e3e3e3; text-align: right; }")
MODEL_NAMES = {"dense": "dense", "leviathan_isobody": "Leviathan iso-body",
               "leviathan_isoparam": "Leviathan isoparametric"}


@functools.lru_cache(maxsize=2)
def share_figure(tied: bool):
    """The share curve depends only on ``tied``: built once per process, shared by every session."""
    return embedding_share_figure(embedding_share_curve(tied=tied), paper_point(tied=tied))


class AllocationTab(pn.viewable.Viewer):
    """Sliders for a dense model and the generator; stacked blocks and the share curve."""

    tokenizer = param.Selector(default="o200k_base", objects=list(TOKENIZER_OPTIONS.values()))
    custom_vocab = param.Integer(default=32_000, doc="vocabulary size when tokenizer is 'custom'")
    d_model = param.Integer(default=512, bounds=(64, 4096))
    n_layers = param.Integer(default=6, bounds=(1, 64))
    n_heads = param.Integer(default=8, bounds=(1, 64))
    tied = param.Boolean(default=False, doc="tie the dense table to the output head")
    match_by = param.Selector(default="depth", objects=["depth", "width", "ffn"])
    k = param.Integer(default=3, bounds=(1, 4))
    d_seed = param.Selector(default=128, objects=[16, 32, 64, 128, 256])
    n_modes = param.Integer(default=8, bounds=(1, 16))
    n_knots = param.Integer(default=32, bounds=(4, 64))
    rank = param.Selector(default=64, objects=[8, 16, 32, 64, 128])

    report = param.Dict(default=None, doc="the latest params.comparison output (None after bad input)")

    def __init__(self, **params):
        super().__init__(**params)
        self.error = message()
        self.numbers = pn.pane.HTML("", sizing_mode="stretch_width", css_classes=["allocation-numbers"],
                                    stylesheets=[TABLE_CSS])
        self.summary = pn.pane.Markdown("", css_classes=["allocation-summary"])
        self.bars = pn.pane.Plotly(None, sizing_mode="stretch_width", height=380)
        self.share = pn.pane.Plotly(None, sizing_mode="stretch_width", height=380)
        self.param.watch(self._update, [p for p in self.param if p not in ("name", "report")])
        self._update()

    def _vocab_size(self) -> int:
        return self.custom_vocab if self.tokenizer == CUSTOM else TOKENIZER_VOCAB[self.tokenizer]

    def _update(self, *events) -> None:
        try:
            report = allocation_report(
                vocab_size=self._vocab_size(), d_model=self.d_model, n_layers=self.n_layers, n_heads=self.n_heads,
                tied=self.tied, match_by=self.match_by,
                generator=dict(k=self.k, d_seed=self.d_seed, n_modes=self.n_modes, n_knots=self.n_knots,
                               rank=self.rank))
        except ValueError as exc:  # ConfigError included: the message names the value and the range
            self.report = None
            show(self.error, f"**Cannot count this model:** {one_line(exc)}")
            self.numbers.object = ""
            self.summary.object = ""
            set_figure(self.bars, None)  # no stale bars beside the message
            return
        show(self.error, "")
        self.report = report
        set_figure(self.bars, allocation_bars(report))
        self.numbers.object = _numbers_table(report)
        iso = report["leviathan_isoparam"]
        dense = report["dense"]
        extra = {"depth": f"{iso['n_layers']} layers instead of {dense['n_layers']}",
                 "width": f"width {iso['d_model']} instead of {dense['d_model']}",
                 "ffn": f"SwiGLU hidden size {iso.get('ffn_hidden')}"}[self.match_by]
        self.summary.object = (
            f"The dense input table holds **{100 * dense['embedding'] / dense['total']:.1f}%** of the "
            f"{human(dense['total'])} parameters. The generator replacing it has **{human(iso['generator'])}**. "
            f"The isoparametric Leviathan spends the freed budget on {self.match_by}: **{extra}** "
            f"(total {100 * iso['relative_gap']:+.2f}% vs dense).")
        if not events or any(e.name == "tied" for e in events):
            self.share.object = share_figure(self.tied)

    def controls(self) -> pn.Column:
        w = pn.widgets
        custom = w.IntInput.from_param(self.param.custom_vocab, label="custom vocabulary size",
                                       visible=self.tokenizer == CUSTOM)
        self.param.watch(lambda e: setattr(custom, "visible", e.new == CUSTOM), "tokenizer")
        return pn.Column(
            "### Dense model",
            w.Select.from_param(self.param.tokenizer, label="tokenizer / vocabulary", options=TOKENIZER_OPTIONS),
            custom,
            w.IntSlider.from_param(self.param.d_model, label="width d_model", step=64),
            w.IntSlider.from_param(self.param.n_layers, label="layers"),
            w.IntSlider.from_param(self.param.n_heads, label="heads"),
            w.Checkbox.from_param(self.param.tied, label="tie input table and head (dense)"),
            w.RadioButtonGroup.from_param(self.param.match_by, label="isoparametric match by"),
            "### Generator",
            w.IntSlider.from_param(self.param.k, label="digits k"),
            w.Select.from_param(self.param.d_seed, label="seed width d_seed"),
            w.IntSlider.from_param(self.param.n_modes, label="modes M"),
            w.IntSlider.from_param(self.param.n_knots, label="B-spline knots kappa"),
            w.Select.from_param(self.param.rank, label="rank r"),
            width=300,
        )

    def __panel__(self):
        return pn.Row(
            self.controls(),
            pn.Column(self.error, self.summary, self.bars, self.numbers, self.share, sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )


def _numbers_table(report: dict) -> str:
    keys = list(MODEL_NAMES)
    head = "".join(f"<th>{MODEL_NAMES[k]}</th>" for k in keys)
    rows = []
    for block in ("embedding", "generator", "body", "head", "total"):
        cells = "".join(
            f"<td data-block='{block}' data-model='{k}'>{report[k][block]:,}"
            + ("" if block == "total" else f" <small>({100 * report[k][block] / report[k]['total']:.1f}%)</small>")
            + "</td>" for k in keys)
        rows.append(f"<tr><th>{block}</th>{cells}</tr>")
    rows.append("<tr><th>layers</th>" + "".join(f"<td>{report[k]['n_layers']}</td>" for k in keys) + "</tr>")
    rows.append("<tr><th>width</th>" + "".join(f"<td>{report[k]['d_model']}</td>" for k in keys) + "</tr>")
    return (f"<table class='allocation-table'>"
            f"<tr><th></th>{head}</tr>{''.join(rows)}</table>")
