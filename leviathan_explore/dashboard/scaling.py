"""Tab 5, scaling: the dense power-law fit with its band, Leviathan's effective sizes, the
multiplier table, the paper's 1.47x-2.11x band. Fits are ``analysis.scaling``; what the
plot draws is ``analysis.scaling_curves``."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pandas as pd
import panel as pn
import param

from ..viz.scaling import multiplier_table_figure, scaling_figure
from .common import list_runs, message, one_line, run_in_background, set_figure, show, shipped_results_dir

RUNS = "runs"
DEMO = "demo"
SWEEP_PREFIX = "sweep:"
N_BOOT = 200  # bootstrap resamples: enough for a band on screen, quick to compute


def scaling_sources(runs_dir: Path) -> dict[str, str]:
    """label -> key: the runs directory, each committed sweep (results/sweeps/*), the shipped demo."""
    options = {f"runs directory ({runs_dir})": RUNS}
    sweeps = shipped_results_dir() / "sweeps"
    if sweeps.is_dir():
        for d in sorted(sweeps.iterdir()):
            if d.is_dir() and not d.is_symlink() and ((d / "selected.json").is_file() or (d / "runs").is_dir()):
                options[f"committed sweep {d.name}"] = SWEEP_PREFIX + d.name
    if (shipped_results_dir() / "demo").is_dir():
        options["shipped demo (one cpu-tiny pair)"] = DEMO
    return options


def load_table(key: str, runs_dir: Path) -> pd.DataFrame:
    """The registry table of a source (names made unique by their path under the source)."""
    from ..analysis.registry import load_for_fit

    if key == RUNS:
        runs, problems = list_runs(runs_dir)
        if problems:
            raise ValueError(problems[0])
        if not runs:
            raise ValueError(f"runs directory {str(runs_dir)!r} holds no finished runs yet: train some in the "
                             f"Train tab, or pick a committed sweep or the shipped demo")
        df = load_for_fit(*[r.path for r in runs])
        df["name"] = [r.name for r in runs]
        return df
    if key == DEMO:
        root = shipped_results_dir() / "demo"
        runs, problems = list_runs(root)
        if problems or not runs:
            raise ValueError(problems[0] if problems else f"{root} holds no runs")
        df = load_for_fit(*[r.path for r in runs])
        df["name"] = [f"demo/{r.name}" for r in runs]
        return df
    if key.startswith(SWEEP_PREFIX):
        name = key[len(SWEEP_PREFIX):]
        sweeps = shipped_results_dir() / "sweeps"
        names = {d.name for d in sweeps.iterdir() if d.is_dir() and not d.is_symlink()} if sweeps.is_dir() else set()
        if name not in names:
            raise ValueError(f"no committed sweep named {name!r}")
        return load_for_fit(sweeps / name)
    raise ValueError(f"unknown scaling source {key!r}")


class ScalingTab(pn.viewable.Viewer):
    source = param.Selector(default=RUNS, objects=[RUNS])
    x = param.Selector(default="total", objects=["total", "non_embedding"])

    def __init__(self, runs_dir: str | Path = "runs", **params):
        super().__init__(**params)
        self.runs_dir = Path(runs_dir)
        self.active = False
        self.error = message()
        self.notes = message(kind="info")
        self.law = pn.pane.Markdown("", css_classes=["scaling-law"], sizing_mode="stretch_width")
        self.plot = pn.pane.Plotly(None, sizing_mode="stretch_width", height=460, visible=False)
        self.table = pn.pane.Plotly(None, sizing_mode="stretch_width", visible=False)
        self.body = pn.Column(self.law, self.plot, self.table, sizing_mode="stretch_width")
        self._generation = 0
        self.pending = None  # the computation in flight, if any
        self.source_select = pn.widgets.Select(label="runs", options={}, width=280)
        self.source_select.param.watch(lambda e: setattr(self, "source", e.new), "value")
        self.param.watch(self._update, ["source", "x"])

    def activate(self) -> None:
        if self.active:
            return
        self.active = True
        options = scaling_sources(self.runs_dir)
        self.param.source.objects = list(options.values())
        self.source_select.options = options
        # prefer what the user trained, then a committed sweep, then the demo
        preferred = RUNS
        try:
            has_runs = bool(list_runs(self.runs_dir)[0])
        except FileNotFoundError:
            has_runs = False
        if not has_runs:
            preferred = next((v for v in options.values() if v.startswith(SWEEP_PREFIX)),
                             DEMO if DEMO in options.values() else RUNS)
        with param.discard_events(self):
            self.source = preferred
        self.source_select.value = preferred
        self._update()

    def _update(self, *events) -> None:
        """Load and fit off the event loop (the bootstrap takes seconds on a large sweep)."""
        if not self.active:
            return
        self._generation += 1
        generation, key, x = self._generation, self.source, self.x
        self.body.loading = True
        self.pending = run_in_background(lambda: self._compute(key, x), partial(self._ready, generation, x))

    def _compute(self, key: str, x: str):
        """(registry table, scaling view or the reason there is no fit)."""
        from ..analysis.scaling import ScalingFitError, analyze_runs
        from ..analysis.scaling_curves import scaling_view

        df = load_table(key, self.runs_dir)
        try:
            return df, scaling_view(analyze_runs(df, x=x, n_boot=N_BOOT))
        except (ScalingFitError, ValueError) as exc:
            return df, exc

    def _ready(self, generation: int, x: str, result) -> None:
        if generation != self._generation:
            return
        self.body.loading = False
        show(self.notes, "")
        if isinstance(result, BaseException):
            show(self.error, f"**Cannot load runs:** {one_line(result)}")
            set_figure(self.plot, None)
            set_figure(self.table, None)
            self.law.object = ""
            return
        show(self.error, "")
        df, view = result
        if isinstance(view, BaseException):
            show(self.notes, f"No fit: {one_line(view).rstrip('.')}. Showing the runs as points.", "info")
            dense = df[df["arch"] == "dense"]
            lev = df[df["arch"] == "leviathan"]
            set_figure(self.plot, scaling_figure(
                pd.DataFrame({"name": dense["name"], "params": dense[x], "loss": dense["final_val_loss"]}),
                pd.DataFrame({"name": lev["name"], "params": lev[x], "loss": lev["final_val_loss"]})))
            set_figure(self.table, None)
            self.law.object = ""
            return
        law = view["law"]
        self.law.object = (f"Dense fit on {law['n_points']} runs: L(N) = {law['E']['value']:.3f} + "
                           f"{law['A']['value']:.3g} · N^(-{law['alpha']['value']:.3f}); "
                           f"{100 * law['level']:.0f}% bootstrap band over runs ({law['n_boot']} resamples). "
                           f"Paper: Leviathan behaves like a dense model 1.47x-2.11x its size.")
        if view["warnings"]:
            show(self.notes, "; ".join(view["warnings"]), "warning")
        set_figure(self.plot, scaling_figure(view["dense"], view["leviathan"], view["fit"], view["paper_band"]))
        set_figure(self.table, multiplier_table_figure(view["leviathan"]) if len(view["leviathan"]) else None)

    def __panel__(self):
        controls = pn.Column(
            self.source_select,
            pn.widgets.RadioButtonGroup.from_param(self.param.x, label="N counts", width=280,
                                                   options={"total params": "total",
                                                            "non-embedding": "non_embedding"}),
            width=300)
        return pn.Row(controls, pn.Column(self.error, self.notes, self.body,
                                          sizing_mode="stretch_width"), sizing_mode="stretch_width")
