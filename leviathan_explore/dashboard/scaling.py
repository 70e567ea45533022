"""Tab 5, scaling. It opens on a study (``results/sweeps/STUDY/study.json``, read by
``analysis.study``): the sentences ``study_report`` writes from the numbers, its three figures
(``viz.study``) and its tables (``format_report``), with what has not run yet said plainly. A
single sweep or a runs directory shows the dense power-law fit with its band, Leviathan's
effective sizes, the multiplier table, the paper's band and a verdict in words: fits are
``analysis.scaling``, what the plot draws is ``analysis.scaling_curves``, the verdict is
``analysis.interpretation.scaling_verdict``. Runs come from ``analysis.registry``: a runs
directory contributes its finished runs, and the page names every run it left out.

Where studies and committed sweeps are found is the tab's ``sweeps_root`` (default
``results/sweeps`` of the checkout; the app takes it from ``$LEVIATHAN_EXPLORE_SWEEPS``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import panel as pn
import param

from ..analysis.interpretation import PAPER_MULTIPLIER_BAND, scaling_verdict
from ..files import read_json_or_none
from ..training.runs import SELECTED, STUDY_FILE, SWEEP_RUNS
from ..viz.scaling import multiplier_table_figure, scaling_figure
from ..viz.style import plot_text
from ..viz.neighbours import neighbours_figure
from ..viz.study import gap_vs_tokens_figure, regime_map_figure, study_gaps_figure
from .common import LatestRequest, labelled, md_escape, message, one_line, shipped_results_dir, text_pane
from .state import ExplorerState

RUNS = "runs"
DEMO = "demo"
SWEEP_PREFIX = "sweep:"
STUDY_PREFIX = "study:"
DEFAULT_STUDY = "laptop-study"  # listed first, and what the tab opens on
N_BOOT = 200  # bootstrap resamples: enough for a band on screen, quick to compute
CACHED_STUDIES = 4
# strings of a study report written by the library itself (a formula), not names from run files
LIBRARY_TEXT_KEYS = frozenset({"law"})
NAME_KEYED = frozenset({"wall_time_s"})  # dicts of a study report whose keys are sweep names
# the study's headings sized like the rest of the page (Markdown's h3/h4 are poster-sized in Panel)
STUDY_CSS = "h3 { font-size: 1.4em; margin-top: 0.4em; } h4 { font-size: 1.1em; font-weight: 600; margin-top: 1em; }"
STUDY_FIGURES = {"gaps": "the gap at each width", "tokens": "the gap during training",
                 "regime": "the regime map"}


def default_sweeps_root() -> Path:
    """``results/sweeps`` of the checkout: committed sweeps and studies."""
    return shipped_results_dir() / "sweeps"


def _root(root: str | Path | None) -> Path:
    return default_sweeps_root() if root is None else Path(root)


def _is_sweep(d: Path) -> bool:
    return d.is_dir() and not d.is_symlink() and ((d / SELECTED).is_file() or (d / SWEEP_RUNS).is_dir())


def _is_study(d: Path) -> bool:
    return d.is_dir() and not d.is_symlink() and (d / STUDY_FILE).is_file()


def studies(root: str | Path | None = None) -> dict[str, Path]:
    """name -> directory of every study under ``root`` (a directory holding ``study.json``),
    the laptop study first, then by name."""
    root = _root(root)
    if not root.is_dir():
        return {}
    found = {d.name: d for d in root.iterdir() if _is_study(d)}
    return {n: found[n] for n in sorted(found, key=lambda n: (n != DEFAULT_STUDY, n))}


def committed_sweeps(root: str | Path | None = None) -> dict[str, Path]:
    """name -> directory of the sweeps in ``root`` (default ``results/sweeps``): ``ROOT/NAME`` and
    the sweeps of a study, ``ROOT/STUDY/NAME`` (beside its ``study.json``), named "STUDY/NAME".
    Documented sweeps (a README.md) first, then by name, latest revision first (``cpu-stdlib-v2``
    before ``cpu-stdlib``)."""
    root = _root(root)
    if not root.is_dir():
        return {}
    found: dict[str, Path] = {}
    for d in root.iterdir():
        if _is_sweep(d):
            found[d.name] = d
        elif _is_study(d):
            found.update({f"{d.name}/{s.name}": s for s in d.iterdir() if _is_sweep(s)})
    names = sorted(sorted(found, reverse=True), key=lambda n: not (found[n] / "README.md").is_file())
    return {n: found[n] for n in names}


def _chosen(sweep_dir: Path) -> dict[str, Any]:
    """The models a sweep has chosen so far ({} before it starts, or while selected.json is rewritten)."""
    selected = read_json_or_none(sweep_dir / SELECTED)
    models = selected.get("models") if isinstance(selected, dict) else None
    return models if isinstance(models, dict) else {}


def study_progress(study_dir: Path, plan: dict[str, Any]) -> list[dict[str, Any]]:
    """What has run, per sweep of the plan: the sizes it plans, those with a chosen run, and the
    number of models chosen (read from each sweep's ``selected.json``; nothing is computed)."""
    rows = []
    for sw in plan["sweeps"]:
        planned = [str(s.get("name")) for s in sw.get("sizes", []) if isinstance(s, dict)]
        models = _chosen(study_dir / sw["name"])
        sizes = {str(m.get("size")) for m in models.values() if isinstance(m, dict)}
        rows.append({"sweep": sw["name"], "planned": planned, "with_results": [s for s in planned if s in sizes],
                     "models": len(models)})
    return rows


def study_stamp(study_dir: Path) -> tuple[float, int]:
    """(newest modification time, number) of the study's ``selected.json`` files: a study that
    grows gets a new stamp, and is read again."""
    times = []
    for path in study_dir.glob(f"*/{SELECTED}"):
        try:
            times.append(path.stat().st_mtime)
        except OSError:  # replaced while we looked
            continue
    return max(times, default=0.0), len(times)


def _study_label(name: str, study_dir: Path) -> str:
    plan = read_json_or_none(study_dir / STUDY_FILE)
    sweeps = plan.get("sweeps") if isinstance(plan, dict) else None
    if not isinstance(sweeps, list):
        return f"study {name} (study.json unreadable)"
    names = [sw.get("name") for sw in sweeps if isinstance(sw, dict) and isinstance(sw.get("name"), str)]
    run = sum(1 for n in names if _chosen(study_dir / n))
    return f"study {name} ({run} of {len(names)} sweeps with results)"


def scaling_sources(runs_dir: Path, n_finished: int | None = None, root: str | Path | None = None) -> dict[str, str]:
    """label -> key: each study, the runs directory, each committed sweep, the shipped demo."""
    options = {_study_label(name, d): STUDY_PREFIX + name for name, d in studies(root).items()}
    count = "" if n_finished is None else f", {n_finished} finished run{'s' if n_finished != 1 else ''}"
    options[f"runs directory ({runs_dir}{count})"] = RUNS
    for name in committed_sweeps(root):
        options[f"committed sweep {name}"] = SWEEP_PREFIX + name
    if (shipped_results_dir() / "demo").is_dir():
        options["shipped demo (one cpu-tiny pair)"] = DEMO
    return options


def load_table(key: str, runs_dir: Path, root: str | Path | None = None) -> tuple[pd.DataFrame, list[str]]:
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
        root_dir = shipped_results_dir() / "demo"
        df, skipped = fit_table(root_dir)
        if df.empty:
            raise ValueError(f"{root_dir} holds no finished runs")
        df["name"] = [f"demo/{n}" for n in df["name"]]
        return df, skipped
    if key.startswith(SWEEP_PREFIX):
        name = key[len(SWEEP_PREFIX):]
        sweeps = committed_sweeps(root)
        if name not in sweeps:
            raise ValueError(f"no committed sweep named {name!r}")
        return load_for_fit(sweeps[name]), []
    raise ValueError(f"unknown scaling source {key!r}")


def fit_or_points(df: pd.DataFrame, skipped: list[str], x: str) -> dict:
    """The table, the runs left out, and either the fit (view, report, verdict) or the reason
    there is none (the runs are then drawn as points)."""
    from ..analysis.scaling import ScalingFitError, analyze_runs
    from ..analysis.scaling_curves import scaling_view

    out = {"df": df, "skipped": skipped, "x": x}
    try:
        report = analyze_runs(df, x=x, n_boot=N_BOOT)
    except (ScalingFitError, ValueError) as exc:
        out["no_fit"] = one_line(exc)
        return out
    report_dict = report.to_dict()
    out.update(view=scaling_view(report), report=report_dict, verdict=scaling_verdict(report_dict))
    return out


def compute_scaling(key: str, runs_dir: Path, x: str, root: str | Path | None = None) -> dict:
    """Everything the tab shows for one sweep, runs directory or the demo (``fit_or_points``)."""
    df, skipped = load_table(key, runs_dir, root)
    return fit_or_points(df, skipped, x)


def sweep_figure(r: dict):
    """The loss-against-parameters plot of ``fit_or_points``'s output: the fit, or the runs as points."""
    if "view" in r:
        v = r["view"]
        return scaling_figure(v["dense"], v["leviathan"], v["fit"], v["paper_band"])
    df, x = r["df"], r["x"]
    dense, lev = df[df["arch"] == "dense"], df[df["arch"] == "leviathan"]
    return scaling_figure(
        pd.DataFrame({"name": dense["name"], "params": dense[x], "loss": dense["final_val_loss"]}),
        pd.DataFrame({"name": lev["name"], "params": lev[x], "loss": lev["final_val_loss"]}))


# ---- studies ------------------------------------------------------------------------------------

def map_strings(obj: Any, fn: Callable[[str], str], key: str | None = None) -> Any:
    """A copy of a study report with every string from the run files (names of runs, sizes,
    sweeps; messages quoting them) passed through ``fn``: ``md_escape`` for the Markdown
    tables, ``plot_text`` for the figures. Numbers, and the library's own formula, are kept."""
    if isinstance(obj, str):
        return obj if key in LIBRARY_TEXT_KEYS else fn(obj)
    if isinstance(obj, dict):
        return {(fn(k) if key in NAME_KEYED and isinstance(k, str) else k): map_strings(v, fn, k)
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [map_strings(v, fn, key) for v in obj]
    return obj


def report_markdown(report: dict[str, Any], format_report=None) -> str:
    """``format_report``'s tables for the page: names escaped, headings two levels down, without
    its title (the tab has its own) and its closing verdict (the tab shows it first)."""
    if format_report is None:
        from ..analysis.study import format_report

    text = format_report(map_strings(report, md_escape))
    text = text.split("\n## What the numbers say", 1)[0]
    lines = text.splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    text = "\n".join(lines).strip()
    return re.sub(r"^(#{1,4}) ", lambda m: "#" * (len(m.group(1)) + 2) + " ", text, flags=re.M)


def figure_has_data(report: dict[str, Any]) -> dict[str, bool]:
    """Which of the study's figures has something to draw (the viz functions draw empty axes otherwise)."""
    rows = (report.get("sweeps") or {}).get("main") or []
    return {"gaps": any(r.get("gap_isoparam") is not None for r in rows),
            "tokens": bool((report.get("gap_vs_tokens") or {}).get("points")),
            "regime": bool(report.get("regime_map"))}


def _describe(exc: BaseException) -> str:
    """A problem as one line; an unexpected kind of error is named (it is a bug, not a state of the study)."""
    text = one_line(exc)
    return text if isinstance(exc, (ValueError, OSError)) else f"{type(exc).__name__}: {text}"


def _points_of_first_sweep(study_dir: Path, plan: dict[str, Any]) -> dict | None:
    """What exists when the report cannot be written: the finished runs of ``main`` (or the first
    sweep with results) as points, or None."""
    from ..analysis.registry import load_for_fit

    names = [sw["name"] for sw in plan["sweeps"]]
    for name in (["main"] if "main" in names else []) + names:
        if not _chosen(study_dir / name):
            continue
        try:
            df = load_for_fit(study_dir / name)
        except Exception:  # noqa: BLE001 - a half-written sweep: the progress table still says what ran
            return None
        if df.empty:
            return None
        out = fit_or_points(df, [], "total")
        out["sweep"] = name
        return out
    return None


@pn.cache(max_items=CACHED_STUDIES)
def _study_view(path: str, stamp: tuple[float, int], n_boot: int) -> dict[str, Any]:
    """Everything the tab shows of one study; ``stamp`` (``study_stamp``) is part of the key only.
    Shared by all sessions: read it, never change it."""
    from ..analysis.study import load_plan, study_report

    study_dir = Path(path)
    plan = load_plan(study_dir)  # a missing or invalid plan: the message of the error, in the page
    out: dict[str, Any] = {"kind": "study", "name": study_dir.name, "dir": path,
                           "description": str(plan.get("description") or ""), "n_boot": n_boot,
                           "progress": study_progress(study_dir, plan), "report": None, "plot_report": None,
                           "problem": "", "tables": "", "tables_problem": "", "points": None}
    from ..analysis import neighbours

    comparison = neighbours.is_neighbours_study(study_dir)  # every representation against another study's law
    try:
        report = (neighbours.neighbours_report if comparison else study_report)(study_dir, n_boot=n_boot)
    except Exception as exc:  # noqa: BLE001 - e.g. too few dense runs to fit yet: said in the page
        out["problem"] = _describe(exc)
        out["points"] = _points_of_first_sweep(study_dir, plan)
        return out
    if comparison:
        out.update(kind="neighbours", report=report, plot_report=map_strings(report, plot_text),
                   has_data={"gaps": any(r.get("mean_gap") is not None and r["kind"] != "dense"
                                         for r in report["rows"])})  # its one figure
        try:
            out["tables"] = report_markdown(report, neighbours.format_report)
        except Exception as exc:  # noqa: BLE001
            out["tables_problem"] = _describe(exc)
        return out
    out.update(report=report, plot_report=map_strings(report, plot_text), has_data=figure_has_data(report))
    if not out["has_data"]["gaps"]:  # no width has its pair yet: show the runs that have finished
        out["points"] = _points_of_first_sweep(study_dir, plan)
    try:
        out["tables"] = report_markdown(report)
    except Exception as exc:  # noqa: BLE001 - the sentences and figures still stand
        out["tables_problem"] = _describe(exc)
    return out


def compute_study(name: str, root: str | Path | None = None) -> dict[str, Any]:
    """What the tab shows for the study ``name`` under ``root`` (cached until it grows)."""
    found = studies(root)
    if name not in found:
        raise ValueError(f"no study named {name!r} in {_root(root)}")
    study_dir = found[name]
    return _study_view(str(study_dir), study_stamp(study_dir), N_BOOT)


def missing_text(study: dict[str, Any]) -> str:
    """What is missing from a study, as Markdown (names escaped): why there is no report, the
    sweeps that have not run, those that ran part of their sizes, the figures with nothing to draw."""
    parts = []
    shown = "what has run" + (f", and the finished runs of {md_escape(study['points']['sweep'])} as points"
                              if study.get("points") else "")
    if study["problem"]:
        parts.append(f"**The study report cannot be written yet:** {md_escape(study['problem'].rstrip('.'))}. "
                     f"Shown below: {shown}.")
    progress = study["progress"]
    not_run = [p["sweep"] for p in progress if not p["with_results"]]
    partial = [p for p in progress if p["with_results"] and len(p["with_results"]) < len(p["planned"])]
    if not_run:
        parts.append(f"**Not run yet ({len(not_run)} of {len(progress)} sweeps):** "
                     + ", ".join(md_escape(n) for n in not_run) + ".")
    if partial:
        parts.append("**Incomplete:** " + "; ".join(
            f"{md_escape(p['sweep'])} (no chosen run yet at "
            + ", ".join(md_escape(s) for s in p["planned"] if s not in p["with_results"]) + ")" for p in partial) + ".")
    if study.get("report") is not None:
        has = study["has_data"]  # the figures that apply to this kind of study, and whether each has data
        empty = [label for key, label in STUDY_FIGURES.items() if key in has and not has[key]]
        if empty:
            parts.append("**Not drawn yet (no data):** " + "; ".join(empty) + "."
                         + (f" Shown instead: {shown}." if study.get("points") else ""))
    if study.get("tables_problem"):
        parts.append(f"**The tables could not be written:** {md_escape(study['tables_problem'])}.")
    return "\n\n".join(parts)


def progress_markdown(study: dict[str, Any]) -> str:
    lines = ["#### What has run", "", "| sweep | sizes with a chosen run | models chosen |", "|---|---|---|"]
    for p in study["progress"]:
        done = ", ".join(md_escape(s) for s in p["with_results"]) or "none"
        lines.append(f"| {md_escape(p['sweep'])} | {done} ({len(p['with_results'])} of {len(p['planned'])}) | "
                     f"{p['models']} |")
    return "\n".join(lines)


class ScalingTab(pn.viewable.Viewer):
    state = param.ClassSelector(class_=ExplorerState, doc="the session's shared state (runs)")
    sweeps_root = param.ClassSelector(class_=Path, default=None, constant=True,
                                      doc="where studies and committed sweeps are found (None: results/sweeps)")
    source = param.Selector(default=RUNS, objects=[RUNS])
    x = param.Selector(default="total", objects=["total", "non_embedding"])

    result = param.Dict(default=None, doc="compute_scaling's output for the current sweep or runs and x")
    study = param.Dict(default=None, doc="compute_study's output for the current study")
    problem = param.String(default="", doc="why the source cannot be loaded (plain text)")
    computing = param.String(default="", doc="what is being computed in the background (Markdown), or ''")
    options = param.Dict(default={})

    def __init__(self, state: ExplorerState | None = None, sweeps_root: str | Path | None = None, **params):
        super().__init__(state=state if state is not None else ExplorerState(),
                         sweeps_root=None if sweeps_root is None else Path(sweeps_root), **params)
        self.active = False
        self._worker = LatestRequest("scaling", on_error=self._failed)
        self.error = message()
        self.error.param.update(object=pn.bind(self._error_text, self.param.problem, self.param.source),
                                visible=pn.bind(bool, self.param.problem))
        self.status = message(kind="light")
        self.status.css_classes = ["scaling-status"]
        self.status.param.update(object=self.param.computing, visible=pn.bind(bool, self.param.computing))
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
        self._build_study_view()
        self.source_select = pn.widgets.Select(label="study, sweep or runs", options=self.param.options,
                                               value=self.param.source, width=280)
        self.source_select.param.watch(lambda e: setattr(self, "source", e.new) if e.new else None, "value")

    def _build_study_view(self) -> None:
        def has(key: str):  # a figure is shown when the report has its data
            return lambda s: bool(s and s["report"] is not None and s["has_data"].get(key, False))

        self.study_head = text_pane(self._study_head, css_classes=["study-head"], sizing_mode="stretch_width",
                                    stylesheets=[STUDY_CSS])
        self.study_missing = message(kind="warning")
        self.study_missing.css_classes = ["study-missing"]
        self.study_missing.param.update(object=self._study_missing,
                                        visible=pn.bind(lambda s: bool(s and missing_text(s)), self.param.study))
        self.study_verdict = text_pane(self._study_verdict, css_classes=["study-verdict"],
                                       sizing_mode="stretch_width", stylesheets=[STUDY_CSS],
                                       visible=pn.bind(lambda s: bool(s and s["report"] is not None),
                                                       self.param.study))
        self.study_figures = {
            "gaps": pn.pane.Plotly(self._study_gaps, sizing_mode="stretch_width", height=420,
                                   visible=pn.bind(has("gaps"), self.param.study)),
            "tokens": pn.pane.Plotly(self._study_tokens, sizing_mode="stretch_width", height=420,
                                     visible=pn.bind(has("tokens"), self.param.study)),
            "regime": pn.pane.Plotly(self._study_regime, sizing_mode="stretch_width", height=420,
                                     visible=pn.bind(has("regime"), self.param.study)),
        }
        self.study_points = pn.pane.Plotly(self._study_points, sizing_mode="stretch_width", height=460,
                                           visible=pn.bind(lambda s: bool(s and s.get("points")), self.param.study))
        self.study_tables = text_pane(self._study_tables, css_classes=["study-tables"], sizing_mode="stretch_width",
                                      stylesheets=[STUDY_CSS])
        self.study_progress = text_pane(self._study_progress, css_classes=["study-progress"],
                                        sizing_mode="stretch_width", stylesheets=[STUDY_CSS])
        self.study_body = pn.Column(self.study_head, self.study_missing, self.study_verdict,
                                    *self.study_figures.values(), self.study_points, self.study_tables,
                                    self.study_progress, sizing_mode="stretch_width",
                                    visible=pn.bind(lambda s: s is not None, self.param.study))

    @property
    def pending(self):
        return self._worker.thread

    def activate(self) -> None:
        """Each time the tab is shown: list the sources again (a run may have finished, a study grown)."""
        self.state.refresh()
        finished = [r for r in self.state.runs if r.status == "finished"]
        options = scaling_sources(self.state.runs_dir, len(finished), self.sweeps_root)
        self.param.source.objects = list(options.values())
        first = not self.active
        self.active = True
        self.options = options
        if first:
            # a study first (the laptop study is listed first), then what the user trained, then the
            # newest committed sweep, then the demo
            keys = list(options.values())
            preferred = next((k for k in keys if k.startswith(STUDY_PREFIX)), None) or (RUNS if finished else next(
                (k for k in keys if k.startswith(SWEEP_PREFIX)), DEMO if DEMO in keys else RUNS))
            if preferred == self.source:
                self._update()
            else:
                self.source = preferred
        elif self.source == RUNS or self.source.startswith(STUDY_PREFIX):
            self._update()  # the runs directory may hold new runs, the study new sweeps (cached if not)

    @param.depends("source", "x", watch=True)
    def _update(self) -> None:
        """Load and fit off the event loop (the bootstrap takes seconds on a large sweep)."""
        if not self.active:
            return
        key, x, runs_dir, root = self.source, self.x, self.state.runs_dir, self.sweeps_root
        self.problem = ""  # a stale message must not stand beside the new computation
        self.body.loading = self.study_body.loading = True
        if key.startswith(STUDY_PREFIX):
            name = key[len(STUDY_PREFIX):]
            self.computing = (f"Reading study {md_escape(name)} and fitting its dense law ({N_BOOT} bootstrap "
                              f"resamples; seconds to a minute the first time, then kept until a sweep grows)...")
            self._worker.submit(lambda: compute_study(name, root), self._ready)
        else:
            self.computing = f"Loading the runs and fitting the dense law ({N_BOOT} bootstrap resamples)..."
            self._worker.submit(lambda: compute_scaling(key, runs_dir, x, root), self._ready)

    def _ready(self, result) -> None:
        self.body.loading = self.study_body.loading = False
        self.computing = ""
        if isinstance(result, BaseException):
            self.param.update(result=None, study=None, problem=_describe(result))
        elif result.get("kind") in ("study", "neighbours"):
            self.param.update(study=result, result=None, problem="")
        else:
            self.param.update(result=result, study=None, problem="")

    def _failed(self, exc: BaseException) -> None:
        """A view raised while showing a result: the message in the page, not a traceback in the log."""
        self.body.loading = self.study_body.loading = False
        self.param.update(problem=_describe(exc), computing="")

    @staticmethod
    def _error_text(problem: str, source: str) -> str:
        if not problem:
            return ""
        what = "the study" if source.startswith(STUDY_PREFIX) else "runs"
        return f"**Cannot load {what}:** {md_escape(problem)}"

    # ---- views of a sweep or a runs directory ------------------------------------------------
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
        return None if not self.result else sweep_figure(self.result)

    @param.depends("result")
    def _table(self):
        r = self.result
        if not r or "view" not in r or not len(r["view"]["leviathan"]):
            return None
        return multiplier_table_figure(r["view"]["leviathan"])

    # ---- views of a study ----------------------------------------------------------------------
    @param.depends("study")
    def _study_head(self) -> str:
        s = self.study
        if not s:
            return ""
        where = Path(s["dir"])
        try:
            where = where.relative_to(shipped_results_dir().parent)
        except ValueError:
            pass
        text = f"### Study {md_escape(s['name'])}"
        if s["description"]:
            text += f"\n\n{md_escape(s['description'])}"
        reader = "analysis.neighbours.neighbours_report" if s["kind"] == "neighbours" else "analysis.study.study_report"
        return text + (f"\n\nRead by `{reader}` from {md_escape(where)} "
                       f"({s['n_boot']} bootstrap resamples); re-read when one of its sweeps chooses a new run.")

    @param.depends("study")
    def _study_missing(self) -> str:
        return "" if not self.study else missing_text(self.study)

    @param.depends("study")
    def _study_verdict(self) -> str:
        s = self.study
        if not s or s["report"] is None:
            return ""
        head = "#### What the numbers say (these sentences are written by the library from the numbers below)"
        sentences = s["report"].get("verdict") or []
        if not sentences:
            return head + "\n\nNo sentence yet: none of the sweeps the report reads has results."
        return head + "\n\n" + "\n".join(f"- {md_escape(v)}" for v in sentences)

    def _study_figure(self, key: str, draw):
        s = self.study
        if not s or s["report"] is None or not s["has_data"].get(key, False):
            return None
        return draw(s["plot_report"])

    @param.depends("study")
    def _study_gaps(self):
        draw = neighbours_figure if self.study and self.study.get("kind") == "neighbours" else study_gaps_figure
        return self._study_figure("gaps", draw)

    @param.depends("study")
    def _study_tokens(self):
        return self._study_figure("tokens", gap_vs_tokens_figure)

    @param.depends("study")
    def _study_regime(self):
        return self._study_figure("regime", regime_map_figure)

    @param.depends("study")
    def _study_points(self):
        s = self.study
        return sweep_figure(s["points"]) if s and s.get("points") else None

    @param.depends("study")
    def _study_tables(self) -> str:
        return self.study["tables"] if self.study else ""

    @param.depends("study")
    def _study_progress(self) -> str:
        return progress_markdown(self.study) if self.study else ""

    def __panel__(self):
        controls = pn.Column(
            self.source_select,
            pn.Column(labelled("N counts", pn.widgets.RadioButtonGroup.from_param(
                self.param.x, label="N counts", width=280,
                options={"total params": "total", "non-embedding": "non_embedding"})), margin=0,
                visible=pn.bind(lambda s: not s.startswith(STUDY_PREFIX), self.param.source)),
            width=300)
        return pn.Row(controls, pn.Column(self.status, self.error, self.study_body, self.notes, self.body,
                                          sizing_mode="stretch_width"),
                      sizing_mode="stretch_width")
