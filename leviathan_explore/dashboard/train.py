"""Tab 3, train: a dense model and its matched Leviathan (``training.compare``), trained one
after the other in a background thread owned by the browser session, with live curves
and, at the end, a verdict in words (``analysis.interpretation.pair_verdict``).

The worker only appends metrics to a locked list; a periodic callback of the
session drains it into the figures, so the page never waits on training. Stop and
a closed session set the job's stop flag (``should_stop``), which the trainer polls
between micro-batches: every numeric field is bounded so that one micro-batch stays
well under two seconds on a laptop, and the job ends within seconds of either.
A failure is shown in that session's page only.
"""

from __future__ import annotations

import secrets
import threading
import time
from pathlib import Path

import panel as pn
import param

from ..analysis.interpretation import pair_verdict
from ..analysis.registry import seed_spread, training_flops
from ..config import PRESETS, ConfigError, preset, preset_note
from ..data.catalog import CORPORA, DATA_ROOT, DEFAULT_CORPUS
from ..data.shards import MANIFEST_FILE, read_manifest
from ..params import MATCHES, MatchError, count_params, isobody_match, isoparametric_match
from ..training.compare import MATCH_LABELS
from ..training.runs import SUMMARY
from ..viz.training import bucket_losses_figure, loss_curves_figure
from .common import (NumberField, labelled, md_escape, message, one_line, safe_run_dir, show, show_problem,
                     shipped_results_dir, text_pane)
from .sources import RUN_PREFIX
from .state import ExplorerState

CPU_PRESETS = [p for p in PRESETS if p.startswith("cpu")] + [p for p in PRESETS if not p.startswith("cpu")]
ARCHS = ("dense", "leviathan")
MATCH_CHOICES = {"isoparam (same total, extra depth)": "isoparam", "isobody (same body, fewer parameters)":
                 "isobody", "backbone (tied dense, identical backbone)": "backbone"}

# Bounds of what a page may start, and why. One micro-batch costs about 6 x N x tokens FLOPs
# (registry.training_flops); 1e10 is about half a second of float32 work on one laptop core
# (measured here: 17-37 GFLOP/s for cpu-tiny on one core), so a Stop is honoured within ~2 s.
MICRO_BATCH_FLOPS = 1e10
MAX_BATCH = 64
MAX_STEPS = 5000
MAX_GRAD_ACCUM = 8
LR_RANGE = (1e-5, 1.0)
MIN_SEQ_LEN = 2


def corpus_options(data_root: Path = DATA_ROOT) -> dict[str, str]:
    """label -> data directory: the default corpus (built on first use) and any other built shards."""
    default = DEFAULT_CORPUS.path()
    options = {f"{DEFAULT_CORPUS.name} (default; built on first use)": str(default)}
    about = {spec.path(): spec.about for spec in CORPORA.values()}
    if data_root.is_dir():
        for d in sorted(data_root.iterdir()):
            if (d / MANIFEST_FILE).is_file() and d != default:
                options[f"{d.name} ({d})" + (" [catalogued]" if d in about else "")] = str(d)
    return options


def corpus_vocab(data_dir: str) -> int:
    """The vocabulary size of a corpus: its manifest's, or for the default corpus not yet
    built, what its compaction will give (the kept ids plus one unknown id)."""
    if Path(data_dir) == DEFAULT_CORPUS.path() and not (Path(data_dir) / MANIFEST_FILE).is_file():
        if DEFAULT_CORPUS.compact is None:
            raise ValueError(f"the default corpus {DEFAULT_CORPUS.name} is not built yet")
        return DEFAULT_CORPUS.compact + 1
    return int(read_manifest(data_dir)["vocab_size"])


def micro_batch_tokens(preset_name: str, vocab_size: int, match: str) -> int:
    """Tokens one micro-batch may hold so that the costlier model of the pair stays within
    ``MICRO_BATCH_FLOPS`` (FLOPs from ``params.count_params`` and ``registry.training_flops``)."""
    dense = preset(preset_name, vocab_size=vocab_size, tie_embeddings=match == "backbone")
    try:
        lev = isoparametric_match(dense).config if match == "isoparam" else isobody_match(dense)
    except MatchError:  # refused at start with its own message; bound by the same-body model meanwhile
        lev = isobody_match(dense)
    per_token = max(training_flops(count_params(c).to_dict(), 1) for c in (dense, lev))
    return max(1, int(MICRO_BATCH_FLOPS // per_token))


class _JobCallback:
    """Trainer callback of a job: forwards metrics, tagged with the model being trained, and
    answers the trainer's stop poll."""

    def __init__(self, job: "TrainingJob"):
        self.job = job

    def _arch(self) -> str:
        # compare() trains dense first; its summary exists once it is done
        return "leviathan" if (self.job.run_dir / "dense" / SUMMARY).is_file() else "dense"

    def on_step(self, metrics: dict) -> None:
        self.job._push(self._arch(), metrics)

    def on_eval(self, metrics: dict) -> None:
        self.job._push(self._arch(), metrics)

    def should_stop(self) -> bool:
        return self.job.stop_event.is_set()


class TrainingJob:
    """``training.compare`` into ``run_dir/{dense,leviathan}``, in a thread."""

    def __init__(self, run_dir: Path, data_dir: str, preset_name: str, steps: int, match: str, settings: dict):
        self.run_dir, self.data_dir = Path(run_dir), data_dir
        self.preset, self.steps, self.match, self.settings = preset_name, int(steps), match, dict(settings)
        self.stop_event = threading.Event()
        self.stop_requested_at: float | None = None
        self.ended_at: float | None = None
        self.state = "queued"
        self.error: str | None = None
        self.summaries: dict[str, dict] = {}
        self.last_step: dict[str, int] = {}  # arch -> latest optimizer step reported
        self._pending: list[tuple[str, dict]] = []
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name=f"train-{self.run_dir.name}", daemon=True)

    @property
    def total_steps(self) -> int:
        return 2 * self.steps

    def start(self) -> "TrainingJob":
        self.thread.start()
        return self

    def stop(self) -> None:
        if not self.stop_event.is_set():
            self.stop_requested_at = time.monotonic()
        self.stop_event.set()

    @property
    def done(self) -> bool:
        return self.state in ("finished", "stopped", "failed")

    def _push(self, arch: str, metrics: dict) -> None:
        with self._lock:
            self._pending.append((arch, metrics))
            if metrics.get("type") != "eval":
                self.last_step[arch] = int(metrics.get("step", 0))

    def drain(self) -> list[tuple[str, dict]]:
        """Metrics pushed since the last call, oldest first."""
        with self._lock:
            out, self._pending = self._pending, []
        return out

    def _run(self) -> None:
        from ..data.catalog import ensure_corpus
        from ..training import compare

        try:
            self.state = "preparing the corpus"
            if Path(self.data_dir) == DEFAULT_CORPUS.path():
                ensure_corpus(DEFAULT_CORPUS)
            self.state = "training"
            summaries = compare(self.preset, self.steps, self.data_dir, self.run_dir, match=self.match,
                                match_by="depth", callbacks=[_JobCallback(self)], progress=False, **self.settings)
            for s in summaries:
                self.summaries["dense" if s["arch"] == "dense" else "leviathan"] = s
            stopped = self.stop_event.is_set() or any(s.get("stopped_early") for s in summaries)
            self.state = "stopped" if stopped else "finished"
        except Exception as exc:  # shown in the owning session's page; the server keeps running
            self.error = one_line(exc)
            self.state = "failed"
        finally:
            self.ended_at = time.monotonic()


def _new_run_name() -> str:
    return f"web-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


class TrainTab(pn.viewable.Viewer):
    """Start and stop a dense + matched Leviathan pair; watch them learn; read what it means."""

    state = param.ClassSelector(class_=ExplorerState, doc="the session's shared state (refreshed after a run)")
    preset = param.Selector(default="cpu-tiny", objects=CPU_PRESETS)
    corpus = param.String(default=str(DEFAULT_CORPUS.path()))
    match = param.Selector(default="isoparam", objects=list(MATCHES))
    steps = param.Integer(default=200)
    batch_size = param.Integer(default=8)
    seq_len = param.Integer(default=64)
    grad_accum = param.Integer(default=1)
    lr = param.Number(default=3e-3)
    run_name = param.String(default="")

    curves = param.Dict(default={}, doc="arch -> {train_x, train_loss, val_x, val_loss} of the job shown")
    buckets = param.Dict(default={}, doc="arch -> latest validation loss per frequency bucket")
    verdict = param.String(default="", doc="pair_verdict of the finished pair (plain text)")
    status_text = param.String(default="Press **start** to train.", doc="the job's state (Markdown, escaped)")
    percent_done = param.Integer(default=0, bounds=(0, 100))

    def __init__(self, runs_dir: str | Path | None = None, state: ExplorerState | None = None, **params):
        if state is None:
            state = ExplorerState(runs_dir if runs_dir is not None else "runs")
        super().__init__(state=state, **params)
        self.runs_dir = self.state.runs_dir
        if not self.run_name:
            self.run_name = _new_run_name()
        self.job: TrainingJob | None = None
        self.shown_name = ""  # the run whose curves are on screen
        self.rates: dict[str, float] = {}
        self._periodic = None
        self.fields = {
            "steps": NumberField(self, "steps", "steps (each model)", low=1, high=MAX_STEPS,
                                 reason="a page's pair is a demonstration; longer runs: leviathan-explore compare"),
            "batch_size": NumberField(self, "batch_size", "batch size (sequences)", low=1, high=MAX_BATCH,
                                      reason="micro-batch bound"),
            "seq_len": NumberField(self, "seq_len", "sequence length", low=MIN_SEQ_LEN, high=128,
                                   reason="the preset's max_seq_len"),
            "grad_accum": NumberField(self, "grad_accum", "gradient accumulation (micro-batches per step)", low=1,
                                      high=MAX_GRAD_ACCUM, reason="a step is this many micro-batches; Stop acts "
                                      "between them"),
            "lr": NumberField(self, "lr", "peak learning rate", low=LR_RANGE[0], high=LR_RANGE[1], integer=False,
                              reason="AdamW with warm-up and cosine decay; above 1 these models diverge"),
        }
        self._update_limits()
        self.error = message()
        self.error.css_classes = ["train-error"]
        self.verdict_box = message(kind="info")
        self.verdict_box.css_classes = ["train-verdict"]
        self.verdict_box.param.update(object=pn.bind(lambda v: "\n\n".join(md_escape(x) for x in v.splitlines()),
                                                     self.param.verdict),
                                      visible=pn.bind(bool, self.param.verdict))
        self.status = text_pane(self.param.status_text, css_classes=["train-status"], sizing_mode="stretch_width")
        self.progress = pn.indicators.Progress(value=self.param.percent_done, max=100, sizing_mode="stretch_width",
                                               height=20, bar_color="primary")
        self.loss = pn.pane.Plotly(self._loss_figure, sizing_mode="stretch_width", height=380)
        self.bucket = pn.pane.Plotly(self._bucket_figure, sizing_mode="stretch_width", height=320,
                                     visible=pn.bind(bool, self.param.buckets))
        self.start_button = pn.widgets.Button(label="start", color="primary", width=135)
        self.stop_button = pn.widgets.Button(label="stop", color="warning", width=135, disabled=True)
        self.start_button.on_click(lambda e: self.start())
        self.stop_button.on_click(lambda e: self.stop())
        self.corpus_select = pn.widgets.Select(label="corpus", options=corpus_options(), width=280,
                                               css_classes=["train-corpus"])
        if self.corpus in self.corpus_select.options.values():
            self.corpus_select.value = self.corpus
        self.corpus_select.param.watch(lambda e: setattr(self, "corpus", e.new), "value")
        self.preset_note = text_pane(self._preset_note, css_classes=["train-preset-note"], width=280)
        self.match_note = text_pane(pn.bind(lambda m: f"*{md_escape(MATCHES[m])}*", self.param.match), width=280)
        self.plan = text_pane(self._plan, css_classes=["train-plan"], sizing_mode="stretch_width")

    def activate(self) -> None:
        options = corpus_options()
        if self.corpus not in options.values():
            options[f"{self.corpus}"] = self.corpus
        self.corpus_select.options = options
        self.corpus_select.value = self.corpus

    # ---- limits ------------------------------------------------------------------------------
    @param.depends("preset", "corpus", "match", "seq_len", watch=True)
    def _update_limits(self) -> None:
        """Bounds that depend on the preset and the corpus: the sequence length up to the
        preset's max_seq_len, the batch so that one micro-batch stays within budget."""
        max_seq = int(PRESETS[self.preset].get("max_seq_len", 512))
        try:
            tokens = micro_batch_tokens(self.preset, corpus_vocab(self.corpus), self.match)
        except (ValueError, FileNotFoundError, ConfigError):
            tokens = None  # the corpus is refused at start, with its own message
        if tokens is not None:
            seq_high = max(MIN_SEQ_LEN, min(max_seq, tokens))
            seq_reason = (f"{self.preset}'s max_seq_len is {max_seq}" if seq_high == max_seq else
                          f"one micro-batch of {self.preset} may hold {tokens:,} tokens to stay under ~2 s")
        else:
            seq_high, seq_reason = max_seq, f"{self.preset}'s max_seq_len"
        self.fields["seq_len"].set_range(MIN_SEQ_LEN, seq_high, seq_reason)
        seq = self.seq_len if MIN_SEQ_LEN <= self.seq_len <= seq_high else MIN_SEQ_LEN
        batch_high = MAX_BATCH if tokens is None else max(1, min(MAX_BATCH, tokens // seq))
        reason = (f"one micro-batch of batch x {seq} tokens of {self.preset} stays under ~2 s on a laptop "
                  f"(at most {tokens:,} tokens); use gradient accumulation for larger steps" if tokens else
                  "at most 64 sequences per micro-batch")
        self.fields["batch_size"].set_range(1, batch_high, reason)

    @param.depends("preset", "match", "steps", "batch_size", "seq_len", "grad_accum", "lr", "corpus")
    def _plan(self) -> str:
        """What start will use: the effective values (a field holding a bad entry does not change them)."""
        per_step = self.batch_size * self.seq_len * self.grad_accum
        return (f"Start trains dense, then {md_escape(MATCH_LABELS[self.match])}: {self.steps:,} steps each of "
                f"{self.grad_accum} x {self.batch_size} x {self.seq_len} = {per_step:,} tokens, peak lr {self.lr:g}, "
                f"preset {md_escape(self.preset)}, corpus {md_escape(Path(self.corpus).name)}.")

    @param.depends("preset")
    def _preset_note(self) -> str:
        return md_escape(preset_note(self.preset))

    # ---- control ---------------------------------------------------------------------------
    def start(self) -> TrainingJob | None:
        """Validate the settings and start the job; problems become a message in the page."""
        if self.job is not None and not self.job.done:
            show(self.error, "A training job of this page is still running: stop it first.")
            return None
        try:
            settings = self._checked_settings()
        except (ValueError, OSError) as exc:  # OSError: a corpus directory that is not there
            show_problem(self.error, "Cannot start:", exc)
            return None
        show(self.error, "")
        run_dir = settings.pop("run_dir")
        self.shown_name = self.run_name
        self.rates = {}
        self.param.update(curves={a: {"train_x": [], "train_loss": [], "val_x": [], "val_loss": []} for a in ARCHS},
                          buckets={}, verdict="", percent_done=0,
                          status_text=f"**{md_escape(self.run_name)}**: starting...")
        self.job = TrainingJob(run_dir, self.corpus, self.preset, self.steps, self.match, settings).start()
        self.start_button.disabled, self.stop_button.disabled = True, False
        if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
            self._periodic = pn.state.add_periodic_callback(self.poll, period=500)
        return self.job

    def _checked_settings(self) -> dict:
        """The job's settings, or ValueError naming the first bad one (nothing is used unchecked)."""
        from ..training import TrainConfig, build_model_config

        for field in self.fields.values():
            problem = field.check()
            if problem:
                raise ValueError(problem)
        run_dir = safe_run_dir(self.runs_dir, self.run_name)
        if run_dir.exists():
            raise ValueError(f"run {self.run_name!r} already exists in {self.runs_dir}: choose another name")
        vocab = corpus_vocab(self.corpus)
        settings = dict(batch_size=self.batch_size, seq_len=self.seq_len, grad_accum=self.grad_accum, lr=self.lr,
                        eval_every=max(1, self.steps // 8), eval_batches=4, checkpoint_every=max(1, self.steps),
                        log_every=1)
        tied = self.match == "backbone"
        for arch in ARCHS:  # what compare() will build: refused here, before any training
            cfg = TrainConfig(arch=arch, preset=self.preset, steps=self.steps, tie_embeddings=tied,
                              match=self.match if arch == "leviathan" else None, **settings)
            build_model_config(cfg, vocab)
        return dict(settings, run_dir=run_dir)

    def stop(self) -> None:
        if self.job is not None and not self.job.done:
            self.job.stop()
            self.status_text = (f"**{md_escape(self.shown_name)}**: stopping (the current micro-batch finishes "
                                f"first, then a checkpoint is written)...")

    def shutdown(self) -> None:
        """The session is gone: stop its job (the trainer writes its summary and returns)."""
        if self.job is not None:
            self.job.stop()
        if self._periodic is not None:
            self._periodic.stop()
            self._periodic = None

    # ---- live view -------------------------------------------------------------------------
    def _label(self, arch: str) -> str:
        if arch == "dense":
            return "dense (tied)" if self.job is not None and self.job.match == "backbone" else "dense"
        return MATCH_LABELS.get(self.job.match if self.job else "isoparam", "Leviathan")

    @param.depends("curves")
    def _loss_figure(self):
        shown = {self._label(a): c for a, c in self.curves.items() if c["train_x"]}
        title = f"Loss of {self.shown_name}" if self.shown_name else "Loss"
        return loss_curves_figure(shown, title=title)

    @param.depends("buckets")
    def _bucket_figure(self):
        if not self.buckets:
            return None
        return bucket_losses_figure({self._label(a): b for a, b in self.buckets.items()})

    def poll(self) -> None:
        """Drain the job's metrics into the figures (periodic callback of the session)."""
        job = self.job
        if job is None:
            return
        finished = job.done  # read before draining: everything pushed before the end is in this drain
        new = job.drain()
        if new:
            curves = {a: {k: list(v) for k, v in c.items()} for a, c in self.curves.items()}
            buckets = dict(self.buckets)
            for arch, m in new:
                c = curves[arch]
                if m.get("type") == "eval":
                    c["val_x"].append(m["step"])
                    c["val_loss"].append(m["val_loss"])
                    if m.get("bucket_losses"):
                        buckets[arch] = m["bucket_losses"]
                else:
                    c["train_x"].append(m["step"])
                    c["train_loss"].append(m["loss"])
                    self.rates[arch] = m.get("tokens_per_s", 0.0)
            self.param.update(curves=curves, buckets=buckets)
        done_steps = sum(c["train_x"][-1] if c["train_x"] else 0 for c in self.curves.values())
        self.percent_done = min(100, int(100 * done_steps / max(1, job.total_steps)))
        parts = [f"**{md_escape(self.shown_name)}**: {job.state}, step {done_steps}/{job.total_steps}"]
        for a in ARCHS:
            c = self.curves.get(a)
            if c and c["train_x"]:
                val = f", val loss {c['val_loss'][-1]:.3f}" if c["val_loss"] else ""
                parts.append(f"{md_escape(self._label(a))}: loss {c['train_loss'][-1]:.3f}{val}, "
                             f"{self.rates.get(a, 0):,.0f} tokens/s")
        if not finished:
            if not job.stop_event.is_set():  # keep "stopping..." on screen until the job has ended
                self.status_text = " · ".join(parts)
            return
        if job.error:
            show_problem(self.error, "Training failed:", job.error)
        elif job.state == "finished":
            self.percent_done = 100
            parts.append(f"runs saved in {md_escape(job.run_dir)}")
        else:
            parts.append(f"stopped; what was trained is saved in {md_escape(job.run_dir)}")
        self.status_text = " · ".join(parts)
        if "dense" in job.summaries and "leviathan" in job.summaries:
            spread = seed_spread(shipped_results_dir() / "sweeps")
            self.verdict = pair_verdict(job.summaries["dense"], job.summaries["leviathan"],
                                        seed_spread=None if spread is None else spread["nats"])
        self.start_button.disabled, self.stop_button.disabled = False, True
        self.run_name = _new_run_name()
        if self._periodic is not None:
            self._periodic.stop()
            self._periodic = None
        # the new runs appear in every tab's lists; this session's Leviathan run is the one shown
        trained = (job.run_dir / "leviathan").relative_to(self.runs_dir.resolve()).as_posix()
        self.state.refresh(prefer=RUN_PREFIX + trained if "leviathan" in job.summaries else None)

    def __panel__(self):
        w = pn.widgets
        f = self.fields
        controls = pn.Column(
            w.Select.from_param(self.param.preset, label="preset (CPU-sized first)", width=280),
            self.preset_note,
            self.corpus_select,
            labelled("Leviathan matched to the dense model by",
                     w.RadioBoxGroup.from_param(self.param.match, label="Leviathan match", options=MATCH_CHOICES,
                                                width=280)),
            self.match_note,
            f["steps"], f["batch_size"], f["seq_len"], f["grad_accum"], f["lr"],
            w.TextInput.from_param(self.param.run_name, label=f"run name (in {self.runs_dir})", width=280),
            pn.Row(self.start_button, self.stop_button),
            width=300)
        return pn.Row(controls, pn.Column(self.error, self.plan, self.status, self.progress, self.verdict_box,
                                          self.loss, self.bucket, sizing_mode="stretch_width"),
                      sizing_mode="stretch_width")
