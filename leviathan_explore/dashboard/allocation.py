"""Tab 1, parameter allocation: where the parameters of a dense model and its Leviathan
counterparts go. Every number comes from ``params.comparison`` (via
``analysis.allocation``); this module only binds widgets to it and says what it means."""

from __future__ import annotations

import panel as pn
import param

from ..analysis.allocation import allocation_report, embedding_share_curve, paper_point
from ..config import TOKENIZER_VOCAB
from ..params import MATCHES
from ..report import human
from ..viz.allocation import MODEL_LABELS, allocation_bars, compared_models, embedding_share_figure
from .common import NumberField, labelled, md_escape, message, one_line, text_pane

CUSTOM = "custom"
TOKENIZER_OPTIONS = {f"{name} ({vocab:,})": name for name, vocab in TOKENIZER_VOCAB.items()} | {CUSTOM: CUSTOM}
# ModelConfig.validate's range for vocab_size
VOCAB_RANGE = (1, 10_000_000)
TABLE_CSS = ("table { border-collapse: collapse; font-size: 14px; } "
             "td, th { padding: 4px 12px; border-bottom: 1px solid #e3e3e3; text-align: right; }")
COLUMN_NAMES = {k: v.replace("<br>", " ") for k, v in MODEL_LABELS.items()}


@pn.cache(max_items=2)
def share_curve(tied: bool):
    """The share curve depends only on ``tied``: counted once per process, shared by every session."""
    return embedding_share_curve(tied=tied), paper_point(tied=tied)


class AllocationTab(pn.viewable.Viewer):
    """Sliders for a dense model and the generator; stacked blocks, the share curve, and what they mean."""

    tokenizer = param.Selector(default="o200k_base", objects=list(TOKENIZER_OPTIONS.values()))
    custom_vocab = param.Integer(default=32_000, bounds=VOCAB_RANGE,
                                 doc="vocabulary size when tokenizer is 'custom'")
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
    problem = param.String(default="", doc="why the model cannot be counted (plain text)")

    def __init__(self, **params):
        super().__init__(**params)
        self.vocab_field = NumberField(self, "custom_vocab", "custom vocabulary size", low=VOCAB_RANGE[0],
                                       high=VOCAB_RANGE[1], reason="the vocabulary sizes ModelConfig accepts")
        self.error = message()
        self.error.param.update(object=pn.bind(self._error_text, self.param.problem),
                                visible=pn.bind(bool, self.param.problem))
        self.numbers = pn.pane.HTML(self._numbers, sizing_mode="stretch_width", css_classes=["allocation-numbers"],
                                    stylesheets=[TABLE_CSS])
        self.summary = text_pane(self._summary, css_classes=["allocation-summary"], sizing_mode="stretch_width")
        self.bars = pn.pane.Plotly(self._bars, sizing_mode="stretch_width", height=380,
                                   visible=pn.bind(lambda r: r is not None, self.param.report))
        self.share = pn.pane.Plotly(self._share, sizing_mode="stretch_width", height=380)

    def _vocab_size(self) -> int:
        return self.custom_vocab if self.tokenizer == CUSTOM else TOKENIZER_VOCAB[self.tokenizer]

    @param.depends("tokenizer", "custom_vocab", "d_model", "n_layers", "n_heads", "tied", "match_by", "k",
                   "d_seed", "n_modes", "n_knots", "rank", watch=True, on_init=True)
    def _count(self) -> None:
        try:
            report = allocation_report(
                vocab_size=self._vocab_size(), d_model=self.d_model, n_layers=self.n_layers, n_heads=self.n_heads,
                tied=self.tied, match_by=self.match_by,
                generator=dict(k=self.k, d_seed=self.d_seed, n_modes=self.n_modes, n_knots=self.n_knots,
                               rank=self.rank))
        except ValueError as exc:  # ConfigError included: the message names the value and the range
            self.param.update(report=None, problem=one_line(exc))
            return
        self.param.update(report=report, problem="")

    @staticmethod
    def _error_text(problem: str) -> str:
        return f"**Cannot count this model:** {md_escape(problem)}" if problem else ""

    @param.depends("report")
    def _numbers(self) -> str:
        return "" if self.report is None else numbers_table(self.report)

    @param.depends("report")
    def _bars(self):
        return None if self.report is None else allocation_bars(self.report)

    @param.depends("report")
    def _summary(self) -> str:
        return "" if self.report is None else allocation_summary(self.report)

    @param.depends("report", "tied")
    def _share(self):
        curve, paper = share_curve(self.tied)
        user = None
        if self.report is not None:
            d = self.report["dense"]
            user = {"total": d["total"], "embedding_share": d["embedding"] / d["total"],
                    "vocab_share": (d["embedding"] + d["head"]) / d["total"], "label": "your model"}
        return embedding_share_figure(curve, paper, user=user)

    def controls(self) -> pn.Column:
        w = pn.widgets
        custom = pn.Column(self.vocab_field, visible=pn.bind(lambda t: t == CUSTOM, self.param.tokenizer), margin=0)
        return pn.Column(
            "### Dense model",
            w.Select.from_param(self.param.tokenizer, label="tokenizer / vocabulary", options=TOKENIZER_OPTIONS),
            custom,
            w.IntSlider.from_param(self.param.d_model, label="width d_model", step=64),
            w.IntSlider.from_param(self.param.n_layers, label="layers"),
            w.IntSlider.from_param(self.param.n_heads, label="heads"),
            w.Checkbox.from_param(self.param.tied, label="tie input table and head (dense)"),
            labelled("isoparametric match: spend the savings on",
                     w.RadioButtonGroup.from_param(self.param.match_by, label="isoparametric match by")),
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


def _pct(x: float) -> str:
    return f"{100 * x:+.1f}%"


def allocation_summary(report: dict) -> str:
    """What the counts mean, as Markdown: the table's share, the head that remains, the tied
    case, and each comparison (``params.MATCHES``), from the numbers of ``report``."""
    dense, tied_dense = report["dense"], report["dense_tied"]
    body, iso = report["leviathan_isobody"], report["leviathan_isoparam"]
    V, D = dense["vocab_size"], dense["d_model"]
    table = V * D
    lines = [
        f"The dense input table ({V:,} ids x width {D}) holds **{100 * dense['embedding'] / dense['total']:.1f}%** "
        f"of the dense model's {human(dense['total'])} parameters. The generator that replaces it has "
        f"**{human(body['generator'])}** ({100 * body['generator'] / table:.1f}% of the table).",
        f"**The head remains.** Leviathan replaces only the *input* table: the output head, a {V:,} x {D} matrix "
        f"({human(body['head'])}), still turns the last hidden state into one score per id, so a large "
        f"vocabulary still costs parameters at the output.",
    ]
    if dense["tied"]:
        lines.append(
            f"**Tied case.** This dense model ties its table to its head, so one {human(table)} matrix serves "
            f"both. The same-body Leviathan cannot tie (it has no table): it keeps an untied head and adds the "
            f"generator, so it is **larger** than the dense model ({_pct(body['relative_gap'])}).")
    about = {k: md_escape(v.split(": ", 1)[-1]) for k, v in MATCHES.items()}  # the text after "name: "
    lines.append(f"**Iso-body**: {human(body['total'])}, {_pct(body['relative_gap'])} vs the "
                 f"{'tied' if dense['tied'] else 'untied'} dense model. *{about['isobody']}.*")
    back_gap = _pct(report["leviathan_backbone"]["relative_gap"])
    lines.append(f"**Identical backbone** (the paper's revision): the same Leviathan model, measured against the "
                 f"tied dense model ({human(tied_dense['total'])}): {back_gap}. "
                 f"Iso-body and backbone differ only in the dense model they are compared with: untied, or tied. "
                 f"*{about['backbone']}.*")
    if "error" in iso:
        lines.append(f"**Isoparametric**: not possible for this model. {md_escape(iso['error'])}")
    else:
        extra = {"depth": f"{iso['n_layers']} layers instead of {dense['n_layers']}",
                 "width": f"width {iso['d_model']} instead of {dense['d_model']}",
                 "ffn": f"SwiGLU hidden size {iso.get('ffn_hidden')}"}[iso.get("matched_by", "depth")]
        lines.append(f"**Isoparametric**: the freed budget goes to {iso.get('matched_by', 'depth')}: **{extra}**, "
                     f"total {human(iso['total'])} ({100 * iso['relative_gap']:+.2f}% vs dense). "
                     f"*{about['isoparam']}.*")
    return "\n\n".join(lines)


def numbers_table(report: dict) -> str:
    """Every block of every compared model, exact counts and shares, as an HTML table (numbers only)."""
    keys = compared_models(report)
    head = "".join(f"<th data-model='{k}'>{COLUMN_NAMES[k]}</th>" for k in keys)
    rows = []
    for block in ("embedding", "generator", "body", "head", "total"):
        cells = "".join(
            f"<td data-block='{block}' data-model='{k}'>{report[k][block]:,}"
            + (f" <small>({human(report[k][block])})</small>" if block == "total" else
               f" <small>({100 * report[k][block] / report[k]['total']:.1f}%)</small>")
            + "</td>" for k in keys)
        rows.append(f"<tr><th>{block}</th>{cells}</tr>")
    rows.append("<tr><th>layers</th>" + "".join(f"<td>{report[k]['n_layers']}</td>" for k in keys) + "</tr>")
    rows.append("<tr><th>width</th>" + "".join(f"<td>{report[k]['d_model']}</td>" for k in keys) + "</tr>")
    gaps = []
    for k in keys:
        ref = report[k].get("reference")
        gaps.append(f"<td>{100 * report[k]['relative_gap']:+.1f}% vs {COLUMN_NAMES[ref]}</td>" if ref else "<td></td>")
    rows.append("<tr><th>total vs</th>" + "".join(gaps) + "</tr>")
    return f"<table class='allocation-table'><tr><th></th>{head}</tr>{''.join(rows)}</table>"
