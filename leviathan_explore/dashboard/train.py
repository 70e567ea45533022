"""Tab 3, train: a dense model and its isoparametric Leviathan, trained one after the
other in a background thread owned by the browser session, with live curves.

The worker only appends metrics to a locked list; a periodic callback of the
session drains it into the figures, so the page never waits on training. Closing
the session sets the job's stop flag (``should_stop``), and the trainer stops
cleanly, writing its summary. A failure is shown in that session's page only.
"""

from __future__ import annotations

import secrets
import threading
import time
from pathlib import Path

import panel as pn
import param

from ..config import PRESETS
from ..viz.training import bucket_losses_figure, loss_curves_figure
from .common import message, one_line, safe_run_dir, set_figure, show

DATA_ROOT = Path("data/shards")
EMBEDDED_DATA_DIR = DATA_ROOT / "python-stdlib-compact"   # the CLI's default corpus, same directory
EMBEDDED_COMPACT = 4096
EMBEDDED = "python-stdlib (embedded, 4,096 most frequent ids)"
CPU_PRESETS = [p for p in PRESETS if p.startswith("cpu")] + [p for p in PRESETS if not p.startswith("cpu")]
ARCHS = ("dense", "leviathan")

_CORPUS_LOCK = threading.Lock()  # two sessions asking for the embedded corpus build it once


def corpus_options(data_root: Path = DATA_ROOT) -> dict[str, str]:
    """label -> data directory: the embedded corpus (built on first use) and any built shards."""
    options = {EMBEDDED: str(EMBEDDED_DATA_DIR)}
    if data_root.is_dir():
        for d in sorted(data_root.iterdir()):
            if (d / "manifest.json").is_file() and d != EMBEDDED_DATA_DIR:
                options[f"{d.name} ({d})"] = str(d)
    return options


def ensure_corpus(data_dir: str) -> str:
    """Build the embedded corpus if ``data_dir`` is its (absent) directory; other directories must exist."""
    path = Path(data_dir)
    if (path / "manifest.json").is_file():
        return data_dir
    if path != EMBEDDED_DATA_DIR:
        raise FileNotFoundError(f"data directory {data_dir!r} does not exist (no manifest.json)")
    with _CORPUS_LOCK:
        if not (path / "manifest.json").is_file():
            from ..data import build_corpus

            build_corpus("python-stdlib", path, compact=EMBEDDED_COMPACT, progress=False)
    return data_dir


class _JobCallback:
    """Trainer callback: forwards metrics of one architecture to the job."""

    def __init__(self, job: "TrainingJob", arch: str):
        self.job, self.arch = job, arch

    def on_step(self, metrics: dict) -> None:
        self.job._push(self.arch, metrics)

    def on_eval(self, metrics: dict) -> None:
        self.job._push(self.arch, metrics)

    def should_stop(self) -> bool:
        return self.job.stop_event.is_set()


class TrainingJob:
    """Dense then isoparametric Leviathan into ``run_dir/{dense,leviathan}``, in a thread."""

    def __init__(self, run_dir: Path, data_dir: str, settings: dict):
        self.run_dir, self.data_dir, self.settings = Path(run_dir), data_dir, dict(settings)
        self.stop_event = threading.Event()
        self.state = "queued"
        self.error: str | None = None
        self.summaries: dict[str, dict] = {}
        self.last_step: dict[str, int] = {}  # arch -> latest optimizer step reported
        self._pending: list[tuple[str, dict]] = []
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name=f"train-{self.run_dir.name}", daemon=True)

    @property
    def total_steps(self) -> int:
        return 2 * int(self.settings["steps"])

    def start(self) -> "TrainingJob":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()

    @property
    def done(self) -> bool:
        return self.state in ("finished", "stopped", "failed")

    def _push(self, arch: str, metrics: dict) -> None:
        with self._lock:
            self._pending.append((arch, metrics))
            self.last_step[arch] = int(metrics.get("step", 0))

    def drain(self) -> list[tuple[str, dict]]:
        """Metrics pushed since the last call, oldest first."""
        with self._lock:
            out, self._pending = self._pending, []
        return out

    def _run(self) -> None:
        from ..training import TrainConfig, train

        try:
            self.state = "preparing the corpus"
            ensure_corpus(self.data_dir)
            for arch in ARCHS:
                if self.stop_event.is_set():
                    break
                self.state = f"training {arch}"
                cfg = TrainConfig(arch=arch, match="isoparam" if arch == "leviathan" else None,
                                  data_dir=self.data_dir, out_dir=str(self.run_dir / arch), progress=False,
                                  **self.settings)
                self.summaries[arch] = train(cfg, [_JobCallback(self, arch)])
            self.state = "stopped" if self.stop_event.is_set() else "finished"
        except Exception as exc:  # shown in the owning session's page; the server keeps running
            self.error = one_line(exc)
            self.state = "failed"


class TrainTab(pn.viewable.Viewer):
    """Start and stop a dense + isoparametric Leviathan pair; watch them learn."""

    preset = param.Selector(default="cpu-tiny", objects=CPU_PRESETS)
    corpus = param.String(default=str(EMBEDDED_DATA_DIR))
    steps = param.Integer(default=200)
    batch_size = param.Integer(default=8)
    seq_len = param.Integer(default=64)
    lr = param.Number(default=3e-3)
    run_name = param.String(default="")

    def __init__(self, runs_dir: str | Path = "runs", **params):
        super().__init__(**params)
        self.runs_dir = Path(runs_dir)
        if not self.run_name:
            self.run_name = f"web-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
        self.job: TrainingJob | None = None
        self.curves: dict[str, dict[str, list]] = {}
        self.buckets: dict[str, dict] = {}
        self.rates: dict[str, float] = {}
        self._periodic = None
        self.error = message()
        self.status = pn.pane.Markdown("Press **start** to train.", css_classes=["train-status"],
                                       sizing_mode="stretch_width")
        self.progress = pn.indicators.Progress(value=0, max=100, sizing_mode="stretch_width", height=20,
                                               bar_color="primary")
        self.loss = pn.pane.Plotly(loss_curves_figure({}), sizing_mode="stretch_width", height=380)
        self.bucket = pn.pane.Plotly(None, sizing_mode="stretch_width", height=320, visible=False)
        self.start_button = pn.widgets.Button(label="start", color="primary", width=135)
        self.stop_button = pn.widgets.Button(label="stop", color="warning", width=135, disabled=True)
        self.start_button.on_click(lambda e: self.start())
        self.stop_button.on_click(lambda e: self.stop())
        self.corpus_select = pn.widgets.Select(label="corpus", options=corpus_options(), width=280)
        self.corpus_select.param.watch(lambda e: setattr(self, "corpus", e.new), "value")

    def activate(self) -> None:
        self.corpus_select.options = corpus_options()

    # ---- control ---------------------------------------------------------------------------
    def start(self) -> TrainingJob | None:
        """Validate the settings and start the job; problems become a message in the page."""
        if self.job is not None and not self.job.done:
            show(self.error, "a training job of this page is still running: stop it first")
            return None
        try:
            from ..training import TrainConfig

            run_dir = safe_run_dir(self.runs_dir, self.run_name)
            if run_dir.exists():
                raise ValueError(f"run {self.run_name!r} already exists in {self.runs_dir}: choose another name")
            settings = dict(preset=self.preset, steps=self.steps, batch_size=self.batch_size, seq_len=self.seq_len,
                            lr=self.lr, eval_every=max(1, self.steps // 8), eval_batches=4,
                            checkpoint_every=max(1, self.steps), log_every=max(1, self.steps // 100))
            TrainConfig(**settings)  # validate now, in the page, not in the worker
        except ValueError as exc:
            show(self.error, f"**Cannot start:** {one_line(exc)}")
            return None
        show(self.error, "")
        self.curves = {a: {"train_x": [], "train_loss": [], "val_x": [], "val_loss": []} for a in ARCHS}
        self.buckets, self.rates = {}, {}
        self.loss.object = loss_curves_figure({})
        set_figure(self.bucket, None)
        self.job = TrainingJob(run_dir, self.corpus, settings).start()
        self.start_button.disabled, self.stop_button.disabled = True, False
        self.status.object = f"**{self.run_name}**: starting..."
        if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
            self._periodic = pn.state.add_periodic_callback(self.poll, period=500)
        return self.job

    def stop(self) -> None:
        if self.job is not None:
            self.job.stop()
            self.status.object = f"**{self.run_name}**: stopping after the current step..."

    def shutdown(self) -> None:
        """The session is gone: stop its job (the trainer writes its summary and returns)."""
        if self.job is not None:
            self.job.stop()
        if self._periodic is not None:
            self._periodic.stop()
            self._periodic = None

    # ---- live view -------------------------------------------------------------------------
    def poll(self) -> None:
        """Drain the job's metrics into the figures (periodic callback of the session)."""
        job = self.job
        if job is None:
            return
        finished = job.done  # read before draining: everything pushed before the end is in this drain
        new = job.drain()
        for arch, m in new:
            c = self.curves[arch]
            if m.get("type") == "eval":
                c["val_x"].append(m["step"])
                c["val_loss"].append(m["val_loss"])
                if m.get("bucket_losses"):
                    self.buckets[arch] = m["bucket_losses"]
            else:
                c["train_x"].append(m["step"])
                c["train_loss"].append(m["loss"])
                self.rates[arch] = m.get("tokens_per_s", 0.0)
        label = {a: f"{self.run_name}/{a}" for a in ARCHS}
        if new:
            self.loss.object = loss_curves_figure({label[a]: c for a, c in self.curves.items() if c["train_x"]})
            if self.buckets:
                set_figure(self.bucket, bucket_losses_figure({label[a]: b for a, b in self.buckets.items()}))
        done_steps = sum(len(c["train_x"]) and c["train_x"][-1] for c in self.curves.values())
        self.progress.value = int(100 * done_steps / max(1, job.total_steps))
        parts = [f"**{self.run_name}**: {job.state}, step {done_steps}/{job.total_steps}"]
        for a in ARCHS:
            c = self.curves[a]
            if c["train_x"]:
                val = f", val loss {c['val_loss'][-1]:.3f}" if c["val_loss"] else ""
                parts.append(f"{a}: loss {c['train_loss'][-1]:.3f}{val}, {self.rates.get(a, 0):,.0f} tokens/s")
        self.status.object = " · ".join(parts)
        if finished:
            if job.error:
                show(self.error, f"**Training failed:** {job.error}")
            elif job.state == "finished":
                self.progress.value = 100
                self.status.object += f" · runs saved in `{job.run_dir}`"
            self.start_button.disabled, self.stop_button.disabled = False, True
            self.run_name = f"web-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
            if self._periodic is not None:
                self._periodic.stop()
                self._periodic = None

    def __panel__(self):
        w = pn.widgets
        controls = pn.Column(
            w.Select.from_param(self.param.preset, label="preset (CPU-sized first)", width=280),
            self.corpus_select,
            w.IntInput.from_param(self.param.steps, label="steps (each model)", width=280),
            w.IntInput.from_param(self.param.batch_size, label="batch size (sequences)", width=280),
            w.IntInput.from_param(self.param.seq_len, label="sequence length", width=280),
            w.FloatInput.from_param(self.param.lr, label="peak learning rate", width=280),
            w.TextInput.from_param(self.param.run_name, label=f"run name (in {self.runs_dir})", width=280),
            pn.Row(self.start_button, self.stop_button),
            width=300)
        return pn.Row(controls, pn.Column(self.error, self.status, self.progress, self.loss, self.bucket,
                                          sizing_mode="stretch_width"), sizing_mode="stretch_width")
