"""Tab 5, scaling: the dense power-law fit with its band, Leviathan's effective sizes, the
multiplier table, the paper's band, and a verdict in words. Fits are ``analysis.scaling``;
what the plot draws is ``analysis.scaling_curves``; the verdict is
``analysis.interpretation.scaling_verdict``. Runs come from ``analysis.registry``: a runs
directory contributes its finished runs, and the page names every run it left out."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import panel as pn
import param

from ..analysis.interpretation import PAPER_MULTIPLIER_BAND, scaling_verdict
from ..viz.scaling import multiplier_table_figure, scaling_figure
from .common import LatestRequest, labelled, md_escape, message, one_line, shipped_results_dir, text_pane
from .state import ExplorerState

RUNS = "runs"
DEMO = "demo"
SWEEP_PREFIX = "sweep:"
N_BOOT = 200  # bootstrap resamples: enough for a band on screen, quick to compute


def _is_sweep(d: Path) -> bool:
    return d.is_dir() and not d.is_symlink() and ((d / "selected.json").is_file() or (d / "runs").is_dir())


def committed_sweeps() -> dict[str, Path]:
    """name -> directory of the sweeps in ``results/sweeps``: ``results/sweeps/NAME`` and the
    sweeps of a study, ``results/sweeps/STUDY/NAME`` (beside its ``study.json``), named
    "STUDY/NAME". Documented sweeps (a README.md) first, then by name, latest revision first
    (``cpu-stdlib-v2`` before ``cpu-stdlib``)."""
    root = shipped_results_dir() / "sweeps"
    if not root.is_dir():
        return {}
    found: dict[str, Path] = {}
    for d in root.iterdir():
        if _is_sweep(d):
            found[d.name] = d
        elif d.is_dir() and not d.is_symlink() and (d / "study.json").is_file():
            found.update({f"{d.name}/{s.name}": s for s in d.iterdir() if _is_sweep(s)})
    names = sorted(sorted(found, reverse=True), key=lambda n: not (found[n] / "README.md").is_file())
    return {n: found[n] for n in names}


def scaling_sources(runs_dir: Path, n_finished: int | None = None) -> dict[str, str]:
    """label -> key: the runs directory, each committed sweep (results/sweeps/*), the shipped demo."""
    count = "" if n_finished is None else f", {n_finished} finished run{'s' if n_finished != 1 else ''}"
    options = {f"runs directory ({runs_dir}{count})": RUNS}
    for name in committed_sweeps():
        options[f"committed sweep {name}"] = SWEEP_PREFIX + name
    if (shipped_results_dir() / "demo").is_dir():
        options["shipped demo (one cpu-tiny pair)"] = DEMO
    return options


def load_table(key: str, runs_dir: Path) -> tuple[pd.DataFrame, list[str]]:
    """(registry table of a source, the runs left out with the reason). Runs-directory names
    are their paths under it, so that two pairs' "dense" runs stay apart."""
    from ..analysis.registry import fit_table, load_for_fit

    if key == RUNS:
        df, skipped = fit_table(runs_dir)
        if df.empty:
            left = f" (left out: {'; '.join(skipped)})" if skipped else ""
            raise ValueError(f"runs directory {str(runs_dir)!r} holds no finished runs yet{left}: train some in "
                             f"the Train tab, or pick a committed sweep or the shipped demo")
        return df, skipped
    if key == DEMO:
        root = shipped_results_dir() / "demo"
        df, skipped = fit_table(root)
        if df.empty:
            raise ValueError(f"{root} holds no finished runs")
        df["name"] = [f"demo/{n}" for n in df["name"]]
        return df, skipped
    if key.startswith(SWEEP_PREFIX):
        name = key[len(SWEEP_PREFIX):]
        sweeps = committed_sweeps()
        if name not in sweeps:
            raise ValueError(f"no committed sweep named {name!r}")
        return load_for_fit(sweeps[name]), []
    raise ValueError(f"unknown scaling source {key!r}")


def compute_scaling(key: str, runs_dir: Path, x: str) -> dict:
    """Everything the tab shows for one source: the table, the runs left out, and either the
    fit (view, report, verdict) or the reason there is none."""
    from ..analysis.scaling import ScalingFitError, analyze_runs
    from ..analysis.scaling_curves import scaling_view

    df, skipped = load_table(key, runs_dir)
    out = {"df": df, "skipped": skipped, "x": x}
    try:
        report = analyze_runs(df, x=x, n_boot=N_BOOT)
    except (ScalingFitError, ValueError) as exc:
        out["no_fit"] = one_line(exc)
        return out
    report_dict = report.to_dict()
    out.update(view=scaling_view(report), report=report_dict, verdict=scaling_verdict(report_dict))
    return out


class ScalingTab(pn.viewable.Viewer):
    state = param.ClassSelector(class_=ExplorerState, doc="the session's shared state (runs)")
    source = param.Selector(default=RUNS, objects=[RUNS])
    x = param.Selector(default="total", objects=["total", "non_embedding"])

    result = param.Dict(default=None, doc="compute_scaling's output for the current source and x")
    problem = param.String(default="", doc="why the source cannot be loaded (plain text)")
    options = param.Dict(default={})

    def __init__(self, state: ExplorerState | None = None, **params):
        super().__init__(state=state if state is not None else ExplorerState(), **params)
        self.active = False
        self._worker = LatestRequest("scaling", on_error=lambda e: setattr(self, "problem", one_line(e)))
        self.error = message()
        self.error.param.update(object=pn.bind(lambda p: f"**Cannot load runs:** {md_escape(p)}" if p else "",
                                               self.param.problem),
                                visible=pn.bind(bool, self.param.problem))
        self.notes = message(kind="warning")
        self.notes.param.update(object=self._notes, visible=pn.bind(lambda r: bool(r and self._notes()),
                                                                    self.param.result))
        self.law = text_pane(self._law, css_classes=["scaling-law"], sizing_mode="stretch_width")
        self.verdict = message(kind="info")
        self.verdict.css_classes = ["scaling-verdict"]
        self.verdict.param.update(object=self._verdict, visible=pn.bind(lambda r: bool(r and r.get("verdict")),
                                                                        self.param.result))
        self.plot = pn.pane.Plotly(self._plot, sizing_mode="stretch_width", height=460,
                                   visible=pn.bind(lambda r: r is not None, self.param.result))
        self.table = pn.pane.Plotly(self._table, sizing_mode="stretch_width",
                                    visible=pn.bind(lambda r: self._table() is not None, self.param.result))
        self.body = pn.Column(self.law, self.verdict, self.plot, self.table, sizing_mode="stretch_width")
        self.source_select = pn.widgets.Select(label="runs", options=self.param.options, value=self.param.source,
                                               width=280)
        self.source_select.param.watch(lambda e: setattr(self, "source", e.new) if e.new else None, "value")

    @property
    def pending(self):
        return self._worker.thread

    def activate(self) -> None:
        """Each time the tab is shown: list the sources again (a run may have finished)."""
        self.state.refresh()
        finished = [r for r in self.state.runs if r.status == "finished"]
        options = scaling_sources(self.state.runs_dir, len(finished))
        self.param.source.objects = list(options.values())
        first = not self.active
        self.active = True
        self.options = options
        if first:
            # prefer what the user trained, then the newest committed sweep, then the demo
            preferred = RUNS if finished else next(
                (v for v in options.values() if v.startswith(SWEEP_PREFIX)), DEMO if DEMO in options.values() else RUNS)
            if preferred == self.source:
                self._update()
            else:
                self.source = preferred
        elif self.source == RUNS:
            self._update()  # the runs directory may hold new runs

    @param.depends("source", "x", watch=True)
    def _update(self) -> None:
        """Load and fit off the event loop (the bootstrap takes seconds on a large sweep)."""
        if not self.active:
            return
        key, x, runs_dir = self.source, self.x, self.state.runs_dir
        self.problem = ""  # a stale message must not stand beside the new computation
        self.body.loading = True
        self._worker.submit(lambda: compute_scaling(key, runs_dir, x), self._ready)

    def _ready(self, result) -> None:
        self.body.loading = False
        if isinstance(result, BaseException):
            self.param.update(result=None, problem=one_line(result))
            return
        self.param.update(result=result, problem="")

    # ---- views -------------------------------------------------------------------------------
    @param.depends("result")
    def _notes(self) -> str:
        r = self.result
        if not r:
            return ""
        parts = []
        if r.get("skipped"):
            parts.append(f"**Left out of the fit ({len(r['skipped'])}):** " + md_escape("; ".join(r["skipped"])))
        if "no_fit" in r:
            parts.append(f"**No fit:** {md_escape(r['no_fit'].rstrip('.'))}. Showing the runs as points.")
        elif r["view"]["warnings"]:
            parts.append("**Warnings:** " + md_escape("; ".join(r["view"]["warnings"])))
        return "\n\n".join(parts)

    @param.depends("result")
    def _law(self) -> str:
        r = self.result
        if not r or "view" not in r:
            return ""
        law = r["view"]["law"]
        lo, hi = PAPER_MULTIPLIER_BAND
        return (f"Dense fit on {law['n_points']} runs: L(N) = {law['E']['value']:.3f} + "
                f"{law['A']['value']:.3g} · N^(-{law['alpha']['value']:.3f}); "
                f"{100 * law['level']:.0f}% bootstrap band over runs ({law['n_boot']} resamples, "
                f"{law['n_failed']} could not be fitted). Lower loss is better; the paper reports that Leviathan "
                f"behaves like a dense model {lo}x-{hi}x its size.")

    @param.depends("result")
    def _verdict(self) -> str:
        r = self.result
        if not r or not r.get("verdict"):
            return ""
        return "\n\n".join(md_escape(line) for line in r["verdict"].splitlines())

    @param.depends("result")
    def _plot(self):
        r = self.result
        if not r:
            return None
        if "view" in r:
            v = r["view"]
            return scaling_figure(v["dense"], v["leviathan"], v["fit"], v["paper_band"])
        df, x = r["df"], r["x"]
        dense, lev = df[df["arch"] == "dense"], df[df["arch"] == "leviathan"]
        return scaling_figure(
            pd.DataFrame({"name": dense["name"], "params": dense[x], "loss": dense["final_val_loss"]}),
            pd.DataFrame({"name": lev["name"], "params": lev[x], "loss": lev["final_val_loss"]}))

    @param.depends("result")
    def _table(self):
        r = self.result
        if not r or "view" not in r or not len(r["view"]["leviathan"]):
            return None
        return multiplier_table_figure(r["view"]["leviathan"])

    def __panel__(self):
        controls = pn.Column(
            self.source_select,
            labelled("N counts", pn.widgets.RadioButtonGroup.from_param(
                self.param.x, label="N counts", width=280,
                options={"total params": "total", "non-embedding": "non_embedding"})),
            width=300)
        return pn.Row(controls, pn.Column(self.error, self.notes, self.body, sizing_mode="stretch_width"),
                      sizing_mode="stretch_width")
