"""Tab 1, parameter allocation: where the parameters of a dense model and its counterparts go,
for the token representation chosen to replace the dense table (Leviathan's generator, a
factorised table, the codebooks alone, a hashed embedding). Every number comes from
``params.comparison`` (via ``analysis.allocation``), the collision rate of a hashed embedding
from ``representations.hashed.collision_rate``; this module only binds widgets to them and
says what they mean."""

from __future__ import annotations

import panel as pn
import param

from ..analysis.allocation import REPLACEMENTS, embedding_share_curve, paper_point, representation_report
from ..config import TOKENIZER_VOCAB, ModelConfig, integer_base
from ..params import MATCHES
from ..report import REPR_LABELS, human
from ..representations import lookup_stages
from ..representations.hashed import collision_rate
from ..viz.allocation import MODEL_LABELS, allocation_bars, compared_models, embedding_share_figure
from .common import LatestRequest, NumberField, labelled, md_escape, message, one_line, text_pane

CUSTOM = "custom"
TOKENIZER_OPTIONS = {f"{name} ({vocab:,})": name for name, vocab in TOKENIZER_VOCAB.items()} | {CUSTOM: CUSTOM}
REPRESENTATION_OPTIONS = {REPR_LABELS[r]: r for r in REPLACEMENTS}
# ModelConfig.validate's ranges
VOCAB_RANGE = (1, 10_000_000)
FACTOR_RANGE = (1, 65_536)
BUCKET_RANGE = (1, 100_000_000)
HASH_RANGE = (1, 16)
_DEFAULTS = ModelConfig()
HASH_SEED = _DEFAULTS.hash_seed
# the collision count holds V x h bucket ids in memory and sorts them (o200k x 16 hashes: ~1 s); above
# this many the page names the command instead of counting
COLLISION_LOOKUPS = 4_000_000
TABLE_CSS = ("table { border-collapse: collapse; font-size: 14px; } "
             "td, th { padding: 4px 12px; border-bottom: 1px solid #e3e3e3; text-align: right; } "
             "caption { caption-side: top; text-align: left; font-weight: bold; padding: 12px 0 4px 0; }")
COLUMN_NAMES = {k: v.replace("<br>", " ") for k, v in MODEL_LABELS.items()}
# how a sentence names a representation ("the generator that replaces it"), and a model that uses it
NOUNS = {"leviathan": "generator", "factorized": "factorised table", "codebooks": "codebooks-only representation",
         "hashed": "hashed embedding"}
MODEL_NOUNS = {"leviathan": "Leviathan", "factorized": "factorised-table", "codebooks": "codebooks-only",
               "hashed": "hashed-embedding"}


@pn.cache(max_items=2)
def share_curve(tied: bool):
    """The share curve depends only on ``tied``: counted once per process, shared by every session."""
    return embedding_share_curve(tied=tied), paper_point(tied=tied)


@pn.cache(max_items=16)
def collision_share(vocab_size: int, buckets: int, functions: int, seed: int) -> float:
    """``representations.hashed.collision_rate``, once per setting and process."""
    return collision_rate(vocab_size, buckets, functions, seed)


def model_label(report: dict, key: str) -> str:
    """A column's name: "Leviathan same body" with the chosen representation's name in it."""
    name = report.get("representation", {}).get("name", "leviathan")
    text = COLUMN_NAMES[key]
    return text if name == "leviathan" else text.replace("Leviathan", REPR_LABELS[name])


class AllocationTab(pn.viewable.Viewer):
    """Sliders for a dense model and the representation that replaces its table; stacked blocks,
    the representation's stages, the share curve, and what they mean."""

    tokenizer = param.Selector(default="o200k_base", objects=list(TOKENIZER_OPTIONS.values()))
    custom_vocab = param.Integer(default=32_000, bounds=VOCAB_RANGE,
                                 doc="vocabulary size when tokenizer is 'custom'")
    d_model = param.Integer(default=512, bounds=(64, 4096))
    n_layers = param.Integer(default=6, bounds=(1, 64))
    n_heads = param.Integer(default=8, bounds=(1, 64))
    tied = param.Boolean(default=False, doc="tie the dense table to the output head")
    match_by = param.Selector(default="depth", objects=["depth", "width", "ffn"])
    representation = param.Selector(default="leviathan", objects=list(REPLACEMENTS),
                                    doc="the token representation that replaces the dense table")
    k = param.Integer(default=3, bounds=(1, 4))
    d_seed = param.Selector(default=128, objects=[16, 32, 64, 128, 256])
    n_modes = param.Integer(default=8, bounds=(1, 16))
    n_knots = param.Integer(default=32, bounds=(4, 64))
    rank = param.Selector(default=64, objects=[8, 16, 32, 64, 128])
    factorized_dim = param.Integer(default=_DEFAULTS.factorized_dim, bounds=FACTOR_RANGE,
                                   doc="the factorised table's width E")
    hash_buckets = param.Integer(default=_DEFAULTS.hash_buckets, bounds=BUCKET_RANGE,
                                 doc="rows B of the hashed embedding's table")
    hash_functions = param.Integer(default=_DEFAULTS.hash_functions, bounds=HASH_RANGE,
                                   doc="hash functions h: rows summed per id")

    report = param.Dict(default=None, doc="the latest params.comparison output (None after bad input)")
    problem = param.String(default="", doc="why the model cannot be counted (plain text)")
    collisions = param.Dict(default=None, doc="the hashed embedding's collision count for the current settings")

    def __init__(self, **params):
        super().__init__(**params)
        self.vocab_field = NumberField(self, "custom_vocab", "custom vocabulary size", low=VOCAB_RANGE[0],
                                       high=VOCAB_RANGE[1], reason="the vocabulary sizes ModelConfig accepts")
        self.factor_field = NumberField(self, "factorized_dim", "factor width E", low=FACTOR_RANGE[0],
                                        high=FACTOR_RANGE[1], reason="the factor widths ModelConfig accepts")
        self.buckets_field = NumberField(self, "hash_buckets", "buckets B (table rows)", low=BUCKET_RANGE[0],
                                         high=BUCKET_RANGE[1], reason="the bucket counts ModelConfig accepts")
        self.functions_field = NumberField(self, "hash_functions", "hash functions h", low=HASH_RANGE[0],
                                           high=HASH_RANGE[1], reason="the hash counts ModelConfig accepts")
        self.error = message()
        self.error.param.update(object=pn.bind(self._error_text, self.param.problem),
                                visible=pn.bind(bool, self.param.problem))
        self.numbers = pn.pane.HTML(self._numbers, sizing_mode="stretch_width", css_classes=["allocation-numbers"],
                                    stylesheets=[TABLE_CSS])
        self.summary = text_pane(self._summary, css_classes=["allocation-summary"], sizing_mode="stretch_width")
        self.bars = pn.pane.Plotly(self._bars, sizing_mode="stretch_width", height=380,
                                   visible=pn.bind(lambda r: r is not None, self.param.report))
        self.share = pn.pane.Plotly(self._share, sizing_mode="stretch_width", height=380)
        self.collision_note = text_pane(self._collision_text, css_classes=["hash-collisions"], width=280)
        self._collider = LatestRequest("collisions", on_error=self._collided_with_error)
        self._count_collisions()
        self.setting_boxes = self._setting_boxes()

    def _vocab_size(self) -> int:
        return self.custom_vocab if self.tokenizer == CUSTOM else TOKENIZER_VOCAB[self.tokenizer]

    def settings(self) -> dict:
        """The representation settings of the page (the keyword arguments of ``representation_report``)."""
        return dict(generator=dict(k=self.k, d_seed=self.d_seed, n_modes=self.n_modes, n_knots=self.n_knots,
                                   rank=self.rank),
                    representation=self.representation, factorized_dim=self.factorized_dim,
                    hash_buckets=self.hash_buckets, hash_functions=self.hash_functions)

    @param.depends("tokenizer", "custom_vocab", "d_model", "n_layers", "n_heads", "tied", "match_by", "k",
                   "d_seed", "n_modes", "n_knots", "rank", "representation", "factorized_dim", "hash_buckets",
                   "hash_functions", watch=True, on_init=True)
    def _count(self) -> None:
        try:
            report = representation_report(
                vocab_size=self._vocab_size(), d_model=self.d_model, n_layers=self.n_layers, n_heads=self.n_heads,
                tied=self.tied, match_by=self.match_by, **self.settings())
        except ValueError as exc:  # ConfigError included: the message names the value and the range
            self.param.update(report=None, problem=one_line(exc))
            return
        self.param.update(report=report, problem="")

    # ---- the hashed embedding's collisions ------------------------------------------------------
    @param.depends("representation", "tokenizer", "custom_vocab", "hash_buckets", "hash_functions", watch=True)
    def _count_collisions(self) -> None:
        """Count in the background (a second for o200k x 16 hashes), only while hashed is chosen."""
        if self.representation != "hashed":
            self._collider.cancel()
            return
        key = (self._vocab_size(), self.hash_buckets, self.hash_functions, HASH_SEED)
        if self.collisions and self.collisions["key"] == key and "pending" not in self.collisions:
            return
        if key[0] * key[2] > COLLISION_LOOKUPS:
            self._collider.cancel()
            self.collisions = {"key": key, "too_many": True}
            return
        self.collisions = {"key": key, "pending": True}
        self._collider.submit(lambda: collision_share(*key), lambda result: self._collided(key, result))

    def _collided(self, key: tuple, result) -> None:
        if isinstance(result, BaseException):
            self.collisions = {"key": key, "error": one_line(result)}
        else:
            self.collisions = {"key": key, "rate": float(result)}

    def _collided_with_error(self, exc: BaseException) -> None:
        self.collisions = {"key": None, "error": one_line(exc)}

    @param.depends("collisions")
    def _collision_text(self) -> str:
        c = self.collisions
        if not c or c.get("key") is None:
            return md_escape(c["error"]) if c and c.get("error") else ""
        V, B, h, seed = c["key"]
        if c.get("pending"):
            return f"Counting the collisions of {V:,} ids in {B:,} buckets with {h} hash function(s)..."
        if c.get("too_many"):
            return (f"**Collisions not counted in the page:** {V:,} ids x {h} hash functions is more than the "
                    f"{COLLISION_LOOKUPS:,} bucket lookups it counts. Count them with "
                    f"`leviathan_explore.representations.hashed.collision_rate({V}, {B}, {h}, {seed})`.")
        if "error" in c:
            return f"**Collisions could not be counted:** {md_escape(c['error'])}"
        return (f"**Collisions:** {100 * c['rate']:.2f}% of the {V:,} ids share all {h} of their buckets with "
                f"another id, so they get the same vector (counted by "
                f"`representations.hashed.collision_rate`, hash seed {seed}).")

    # ---- views ----------------------------------------------------------------------------------
    @staticmethod
    def _error_text(problem: str) -> str:
        return f"**Cannot count this model:** {md_escape(problem)}" if problem else ""

    @param.depends("report")
    def _numbers(self) -> str:
        return "" if self.report is None else numbers_table(self.report) + stages_table(self.report)

    @param.depends("report")
    def _bars(self):
        if self.report is None:
            return None
        fig = allocation_bars(self.report)
        name = self.report["representation"]["name"]
        if name != "leviathan":  # the figure names the models after the generator
            for trace in fig.data:
                trace.x = tuple(x.replace("Leviathan", REPR_LABELS[name]) for x in trace.x)
        return fig

    @param.depends("report")
    def _summary(self) -> str:
        return "" if self.report is None else allocation_summary(self.report, self.settings())

    @param.depends("report", "tied")
    def _share(self):
        curve, paper = share_curve(self.tied)
        user = None
        if self.report is not None:
            d = self.report["dense"]
            user = {"total": d["total"], "embedding_share": d["embedding"] / d["total"],
                    "vocab_share": (d["embedding"] + d["head"]) / d["total"], "label": "your model"}
        return embedding_share_figure(curve, paper, user=user)

    def _setting_boxes(self) -> dict[str, pn.Column]:
        """The settings of each representation, each box shown only while it matters: the generator's
        (all five for Leviathan, k and d_seed for the codebooks), E, or B and h with the collisions."""
        w = pn.widgets
        rep = self.param.representation
        generator = pn.Column(
            pn.pane.Markdown(pn.bind(lambda r: "### Generator" if r == "leviathan" else
                                     "### Codebooks (the generator's stage 1)", rep), margin=(0, 10)),
            w.IntSlider.from_param(self.param.k, label="digits k"),
            w.Select.from_param(self.param.d_seed, label="seed width d_seed"),
            pn.Column(w.IntSlider.from_param(self.param.n_modes, label="modes M"),
                      w.IntSlider.from_param(self.param.n_knots, label="B-spline knots kappa"),
                      w.Select.from_param(self.param.rank, label="rank r"),
                      visible=pn.bind(lambda r: r == "leviathan", rep), margin=0),
            visible=pn.bind(lambda r: r in ("leviathan", "codebooks"), rep), margin=0)
        factorized = pn.Column("### Factorised table", self.factor_field,
                               visible=pn.bind(lambda r: r == "factorized", rep), margin=0)
        hashed = pn.Column("### Hashed embedding", self.buckets_field, self.functions_field, self.collision_note,
                           visible=pn.bind(lambda r: r == "hashed", rep), margin=0)
        return {"generator": generator, "factorized": factorized, "hashed": hashed}

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
            "### Replacing the table",
            w.Select.from_param(self.param.representation, label="token representation",
                                options=REPRESENTATION_OPTIONS, css_classes=["representation-select"]),
            *self.setting_boxes.values(),
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


def _digits(vocab_size: int, k: int | None) -> str:
    """How stage 1 writes an id: as its k base-b digits (b from the vocabulary)."""
    return f"k = {k} base-{integer_base(vocab_size, k)} digits" if k else "its base-b digits"


def representation_sentence(report: dict, settings: dict | None = None) -> str:
    """What the chosen representation is, in one sentence, with its settings and stage counts."""
    rep = report["representation"]
    name, stages = rep["name"], rep["stages"]
    V, D = report["dense"]["vocab_size"], report["dense"]["d_model"]
    s = settings or {}
    g = s.get("generator") or {}
    k = g.get("k")
    label = REPR_LABELS[name]
    if name == "leviathan":
        return (f"**What Leviathan is:** each id is written as {_digits(V, k)} that pick rows of {k or 'k'} codebooks, "
                f"summed into a seed of width {g.get('d_seed', 'd_seed')}; each of {g.get('n_modes', 'M')} modes "
                f"projects the seed, squashes it into (0, 1) and multiplies {g.get('n_knots', 'kappa')}-knot "
                f"B-spline features at rank {g.get('rank', 'r')}, and a projection turns the modes into a "
                f"width-{D} vector.")
    if name == "factorized":
        E = s.get("factorized_dim", "E")
        return (f"**What the {label} is:** ALBERT's factorisation: a V x E = {V:,} x {E} table "
                f"({human(stages['table'])} parameters) is looked up, and a projection of E x D = {E} x {D} "
                f"({human(stages['projection'])}) takes the row to the model's width.")
    if name == "codebooks":
        return (f"**What the {NOUNS[name]} is:** the generator's stage 1 alone: {_digits(V, k)} pick rows of "
                f"{k or 'k'} codebooks of width {g.get('d_seed', 'd_seed')} ({human(stages['codebooks'])} "
                f"parameters), summed and projected to width {D} ({human(stages['projection'])}); no seed "
                f"projection, no splines.")
    if name == "hashed":
        B, h = s.get("hash_buckets", "B"), s.get("hash_functions", "h")
        return (f"**What the {label} is:** each id is the sum of h = {h} rows of a {B:,}-row table of width {D} "
                f"({human(stages['table'])} parameters), the rows chosen by {h} hash function(s); ids whose "
                f"rows all coincide with another id's get the same vector, and the collision count beside "
                f"the settings says how many do.")
    return f"**{label}**"


def allocation_summary(report: dict, settings: dict | None = None) -> str:
    """What the counts mean, as Markdown: the table's share, the representation replacing it
    (what it is and its size), the head that remains, the tied case, and each comparison
    (``params.MATCHES``), from the numbers of ``report``; ``settings`` (``AllocationTab.settings``)
    names the representation's settings in its sentence."""
    dense, tied_dense = report["dense"], report["dense_tied"]
    body, iso = report["leviathan_isobody"], report["leviathan_isoparam"]
    rep = report.get("representation") or {"name": "leviathan", "stages": {"generator": body["generator"]}}
    name = rep["name"]
    lev = name == "leviathan"
    thing, model = NOUNS[name], MODEL_NOUNS[name]  # "the generator that replaces it", "the same Leviathan model"
    size = sum(rep["stages"].values())
    V, D = dense["vocab_size"], dense["d_model"]
    table = V * D
    lines = [
        f"The dense input table ({V:,} ids x width {D}) holds **{100 * dense['embedding'] / dense['total']:.1f}%** "
        f"of the dense model's {human(dense['total'])} parameters. The {thing} that replaces it has "
        f"**{human(size)}** ({100 * size / table:.1f}% of the table).",
        representation_sentence(report, settings),
        f"**The head remains.** {'Leviathan' if lev else 'The ' + thing} replaces only the *input* table: the "
        f"output head, a {V:,} x {D} matrix ({human(body['head'])}), still turns the last hidden state into one "
        f"score per id, so a large vocabulary still costs parameters at the output.",
    ]
    if dense["tied"]:
        lines.append(
            f"**Tied case.** This dense model ties its table to its head, so one {human(table)} matrix serves "
            f"both. The same-body {model}{'' if lev else ' model'} cannot tie (it has no {V:,} x {D} table): it "
            f"keeps an untied head and adds the {thing}, so it is **larger** than the dense model "
            f"({_pct(body['relative_gap'])}).")
    about = {k: v.split(": ", 1)[-1] for k, v in MATCHES.items()}  # the text after "name: "
    if not lev:
        about = {k: v.replace("the generator", f"the {thing}").replace("a Leviathan", f"a {model} model")
                 for k, v in about.items()}
    about = {k: md_escape(v) for k, v in about.items()}
    lines.append(f"**Iso-body**: {human(body['total'])}, {_pct(body['relative_gap'])} vs the "
                 f"{'tied' if dense['tied'] else 'untied'} dense model. *{about['isobody']}.*")
    back_gap = _pct(report["leviathan_backbone"]["relative_gap"])
    lines.append(f"**Identical backbone** (the paper's revision): the same {model} model, measured against the "
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
    head = "".join(f"<th data-model='{k}'>{model_label(report, k)}</th>" for k in keys)
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
        gaps.append(f"<td>{100 * report[k]['relative_gap']:+.1f}% vs {model_label(report, ref)}</td>" if ref
                    else "<td></td>")
    rows.append("<tr><th>total vs</th>" + "".join(gaps) + "</tr>")
    return f"<table class='allocation-table'><tr><th></th>{head}</tr>{''.join(rows)}</table>"


def stages_table(report: dict) -> str:
    """The chosen representation's stages (``params.comparison``'s ``representation``): parameters,
    share, and the block each is counted in (table lookups are ``embedding``, the rest ``generator``)."""
    rep = report.get("representation")
    if not rep:
        return ""
    name, stages = rep["name"], rep["stages"]
    total = sum(stages.values())
    lookups = lookup_stages(name)
    rows = "".join(
        f"<tr><th>{stage.replace('_', ' ')}</th><td data-stage='{stage}'>{n:,}</td>"
        f"<td>{100 * n / total:.1f}%</td><td>{'embedding (a lookup)' if stage in lookups else 'generator'}</td></tr>"
        for stage, n in stages.items())
    return (f"<table class='allocation-stages' data-representation='{name}'>"
            f"<caption>Stages of the {NOUNS[name]} ({human(total)} parameters)</caption>"
            f"<tr><th>stage</th><th>parameters</th><th>share</th><th>counted as</th></tr>{rows}"
            f"<tr><th>total</th><td data-stage='total'>{total:,}</td><td>100%</td><td></td></tr></table>")
