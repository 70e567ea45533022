"""The trainer: a short loop over components that each own their state.

``train(cfg, callbacks)`` runs one training run and returns its summary. The
components, in the manner of torchtitan: the model and optimizer (``optim``), the
schedule (``schedule.WarmupCosine``), the data order (``batches.WindowSampler``),
``TrainState`` (step, data position, tokens, times), the ``Evaluator`` (when and on
what to validate), the ``Checkpointer`` (when to save, how many to keep, resuming) and
the run files (``runs``). Callbacks (``callbacks.TrainCallback``) may implement any of
``on_step(metrics)`` (every optimizer step, the dict of a ``train`` line),
``on_eval(metrics)`` (every evaluation, the dict of an ``eval`` line) and
``should_stop() -> bool`` (polled before each step; True stops cleanly: a checkpoint
and ``summary.json`` with ``"stopped_early": true`` are written).

On CUDA: bf16 autocast, TF32 matmuls, fused AdamW. On CPU: float32 throughout, so a
resumed run reproduces the uninterrupted one. The process-global thread count is
never changed here (a dashboard may run ``train`` in a background thread).
"""

from __future__ import annotations

import math
import os
import platform
import signal
import sys
import threading
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from ..config import PRESETS, ConfigError, ModelConfig, preset
from ..model import TransformerLM
from ..params import count_params, isobody_match, isoparametric_match
from .batches import WindowSampler
from .callbacks import TrainCallback, as_callback
from .checkpoint import Checkpointer
from .config import RESUME_CRITICAL, TrainConfig, flatten_settings
from .distributed import DistInfo, init_distributed
from .evaluation import Evaluator, evaluate, unigram_entropy
from .optim import build_optimizer
from .progress import TrainingProgress
from .runs import CHECKPOINTS, CONFIG, RUN_MARKERS, MetricsLog, read_config, truncate_metrics, write_config, write_summary
from .schedule import WarmupCosine
from .state import TrainState

# Model construction draws from the global torch RNG; the lock keeps two trainers in
# one process (dashboard threads) from interleaving their seeded initialisations.
_INIT_LOCK = threading.Lock()


class TrainingDiverged(RuntimeError):
    """The loss or gradient norm became NaN or infinite. The message names the step."""


class _StepAborted(Exception):
    """A stop was asked for between micro-batches: the partial step is discarded."""


def build_model_config(cfg: TrainConfig, vocab_size: int) -> ModelConfig:
    """The model a run trains: the preset's dense model with the data's vocabulary and
    ``cfg.model`` overrides, then for Leviathan (or the representation ``cfg.arch`` names)
    its iso-body or isoparametric match."""
    overrides = dict(cfg.model)
    if "vocab_size" in overrides and overrides["vocab_size"] != vocab_size:
        raise ConfigError("model.vocab_size", overrides["vocab_size"],
                          f"must equal the data's vocabulary size {vocab_size} (or be left out)")
    overrides["vocab_size"] = vocab_size
    overrides.setdefault("max_seq_len", max(PRESETS[cfg.preset].get("max_seq_len", 1), cfg.effective_seq_len))
    if cfg.tie_embeddings:
        overrides["tie_embeddings"] = True
    dense = preset(cfg.preset, **overrides)
    if cfg.arch == "dense":
        return dense
    if cfg.match in ("isobody", "backbone"):
        return isobody_match(dense, cfg.arch)
    return isoparametric_match(dense, by=cfg.match_by, repr=cfg.arch).config


def open_data(data_dir: str | Path):
    """``load_token_data(data_dir)``; it names a missing, empty or corrupt directory itself."""
    if not data_dir:
        raise ConfigError("data_dir", data_dir, "must name a directory built by `leviathan-explore data build`")
    from ..data import load_token_data

    return load_token_data(data_dir)


@contextmanager
def _stop_on_signals(flag: dict):
    """SIGINT/SIGTERM set ``flag['signal']`` so the loop can checkpoint and stop; a second
    signal gets the previous handler (kill). Installed only in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum, frame):
        flag["signal"] = signal.Signals(signum).name
        signal.signal(signum, previous[signum])

    for s in previous:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    except ImportError:  # pragma: no cover - Windows
        return float("nan")


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or "cpu"


def train(cfg: TrainConfig, callbacks: Iterable[Any] = (), *, data=None) -> dict:
    """Train one run as configured and return its summary (also written to ``summary.json``).

    ``callbacks``: objects with any of ``on_step``, ``on_eval``, ``should_stop`` (see the module
    docstring). ``data``: an already loaded ``TokenData`` (default: ``load_token_data(cfg.data_dir)``).
    Raises ``TrainingDiverged`` on a non-finite loss, after writing the summary.
    """
    cfg.validate()
    dist = init_distributed(cfg.device)
    try:
        return Trainer(cfg, callbacks, data, dist).run()
    finally:
        dist.close()


class _Throughput:
    """Tokens per second over the steps since the last logged ``train`` line."""

    def __init__(self):
        self.tokens, self.seconds = 0, 0.0

    def add(self, tokens: int, seconds: float) -> None:
        self.tokens += tokens
        self.seconds += seconds

    def rate(self) -> float:
        return self.tokens / max(self.seconds, 1e-9)

    def reset(self) -> None:
        self.tokens, self.seconds = 0, 0.0


class Trainer:
    """One run: ``run()`` builds the components, then loops step, evaluate, checkpoint."""

    def __init__(self, cfg: TrainConfig, callbacks: Iterable[Any], data, dist: DistInfo):
        self.cfg, self.dist = cfg, dist
        self.callbacks: list[TrainCallback] = [as_callback(cb) for cb in callbacks]
        self.device = dist.device
        if not cfg.out_dir:
            raise ConfigError("out_dir", cfg.out_dir, "must name the run directory, e.g. runs/NAME")
        if cfg.batch_size % dist.world_size:
            raise ConfigError("batch_size", cfg.batch_size, f"must be divisible by the {dist.world_size} ranks")
        self.data = data if data is not None else open_data(cfg.data_dir)
        self.model_cfg = build_model_config(cfg, int(self.data.vocab_size))
        self.out = Path(cfg.out_dir)
        self.seq_len = cfg.effective_seq_len
        self.per_rank = cfg.batch_size // dist.world_size
        self.autocast_dtype = torch.bfloat16 if self.device.type == "cuda" else None
        self.state = TrainState()  # replaced when the run starts (its wall clock starts then)
        self.stop: dict[str, str | None] = {"signal": None}  # set by SIGINT/SIGTERM
        self.metrics: MetricsLog | None = None

    def say(self, message: str) -> None:
        if self.dist.is_main:
            print(f"[train {self.out.name}] {message}", file=sys.stderr, flush=True)

    # ---- the run -------------------------------------------------------------------------
    def run(self) -> dict:
        cfg, state = self.cfg, TrainState()
        self.state = state
        self._check_run_dir()
        self.dist.barrier()  # every rank has inspected the directory before rank 0 writes to it
        raw_model = self._build_model()
        optimizer = build_optimizer(raw_model, lr=cfg.lr, weight_decay=cfg.weight_decay,
                                    device_type=self.device.type)
        schedule = WarmupCosine(cfg.lr, cfg.steps, cfg.effective_warmup_steps, cfg.min_lr_ratio)
        checkpointer = self._checkpointer(raw_model, optimizer, schedule)
        if cfg.resume:
            self._resume(checkpointer)
        if state.step > cfg.steps:
            raise ConfigError("steps", cfg.steps, f"must be >= the checkpoint's step {state.step} to resume")
        self._open_run_files()
        model = self._parallelize(raw_model)
        sampler = WindowSampler(self.data.train, self.seq_len, cfg.seed, split="train")
        counts = np.asarray(self.data.token_counts())
        evaluator = self._evaluator(counts)
        self.unigram_entropy = unigram_entropy(counts)

        bar = TrainingProgress(cfg.steps, state.step, self.out.name, enabled=cfg.progress and self.dist.is_main)
        throughput = _Throughput()
        try:
            with _stop_on_signals(self.stop):
                while state.step < cfg.steps and not self._should_stop():
                    t0 = time.perf_counter()
                    lr = schedule.apply(optimizer, state.step)
                    try:
                        loss, grad_norm = self._train_step(model, raw_model, optimizer, sampler)
                    except _StepAborted:  # a stop asked for mid-step: this step never happened
                        break
                    elapsed = time.perf_counter() - t0
                    state.advance(cfg.samples_per_step, cfg.tokens_per_step, elapsed)
                    throughput.add(cfg.tokens_per_step, elapsed)
                    record = self._log_step(loss, lr, grad_norm, throughput)
                    bar.update(state.step, loss, record["tokens_per_s"])
                    for cb in self.callbacks:
                        cb.on_step(dict(record))
                    if evaluator.should_evaluate(state.step):
                        self._evaluate(evaluator, raw_model)
                    checkpointer.save(state.step, last=state.step == cfg.steps)
            stopped_early = state.step < cfg.steps
            if stopped_early:
                checkpointer.save(state.step, last=True)
            if self.stop["signal"]:
                self.say(f"{self.stop['signal']} received: stopped at step {state.step}, checkpoint "
                         f"{state.last_checkpoint}; continue with --resume")
            return self._finish(stopped_early=stopped_early, interrupted_by=self.stop["signal"])
        except TrainingDiverged as exc:
            self._finish(stopped_early=True, error=str(exc))
            raise
        finally:
            bar.close()
            if self.metrics:
                self.metrics.close()

    # ---- set-up ------------------------------------------------------------------------
    def _check_run_dir(self) -> None:
        """A new run needs an empty directory; a resumed one the settings it was started with."""
        cfg, out = self.cfg, self.out
        existing = [n for n in RUN_MARKERS if (out / n).exists()]
        if not cfg.resume:
            if existing:
                raise ValueError(f"out_dir {str(out)!r} already holds a run ({existing[0]}); "
                                 f"pass --resume to continue it or choose another --out")
            return
        if (out / CONFIG).exists():
            saved = flatten_settings(read_config(out), strict=False)
            current = cfg.to_dict()
            for name in RESUME_CRITICAL:
                if name in saved and saved[name] != current[name]:
                    raise ConfigError(name, current[name], f"differs from the run's {saved[name]!r}; "
                                      f"resume with the original setting or use a new --out")

    def _build_model(self) -> TransformerLM:
        with _INIT_LOCK, torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.cfg.seed)
            model = TransformerLM(self.model_cfg)
        return model.to(self.device)

    def _checkpointer(self, raw_model, optimizer, schedule: WarmupCosine) -> Checkpointer:
        run_info = {"scheduler": schedule.state_dict(), "model_config": self.model_cfg.to_dict(),
                    "arch": self.cfg.arch, "train_config": self.cfg.to_dict(),
                    "data_content_hash": self.data.manifest.get("content_hash"), "world_size": self.dist.world_size}
        return Checkpointer(self.out / CHECKPOINTS, every=self.cfg.checkpoint_every, keep=self.cfg.keep_checkpoints,
                            model=raw_model, optimizer=optimizer, train_state=self.state, run_info=run_info,
                            is_main=self.dist.is_main, barrier=self.dist.barrier, report=self.say)

    def _resume(self, checkpointer: Checkpointer) -> None:
        saved = checkpointer.load_latest()
        if saved is None:
            self.say(f"no checkpoint in {checkpointer.folder}; starting from step 0")
            return
        name, world_size = self.state.last_checkpoint, self.dist.world_size
        if saved.get("world_size", world_size) != world_size:
            self.say(f"checkpoint {name} was written with {saved['world_size']} ranks; "
                     f"continuing with {world_size} (same global batch, same data order)")
        data_hash = checkpointer.run_info["data_content_hash"]
        if data_hash and saved.get("data_content_hash") not in (None, data_hash):
            self.say(f"warning: checkpoint {name} was trained on data with content hash "
                     f"{saved['data_content_hash']}, {self.cfg.data_dir} has {data_hash}")
        self.say(f"resumed from {name} (step {self.state.step})")

    def _evaluator(self, token_counts: np.ndarray) -> Evaluator:
        cfg, dist = self.cfg, self.dist
        # evaluate_fn is this module's name for evaluate, read now: the fault-injection tests
        # replace trainer.evaluate to pause a run mid-evaluation.
        return Evaluator.for_split(
            self.data.val, token_counts, seq_len=self.seq_len, seed=cfg.seed,
            n_sequences=cfg.eval_batches * cfg.batch_size, rank=dist.rank, world_size=dist.world_size,
            every=cfg.eval_every, last_step=cfg.steps, batch_size=max(1, self.per_rank), device=self.device,
            autocast_dtype=self.autocast_dtype, all_reduce=dist.all_reduce_sum if dist.enabled else None,
            evaluate_fn=evaluate)

    def _open_run_files(self) -> None:
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            truncate_metrics(self.out, self.state.step)  # lines logged after the checkpoint are redone
            write_config(self.out, {**self.cfg.to_dict(), "model_config": self.model_cfg.to_dict(),
                                    "world_size": self.dist.world_size})
            self.metrics = MetricsLog(self.out)

    def _parallelize(self, raw_model: TransformerLM) -> torch.nn.Module:
        """The model the steps run: DDP under torchrun, compiled if asked (``raw_model`` is what is saved)."""
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        model = raw_model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel
            model = DistributedDataParallel(raw_model,
                                            device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if self.cfg.compile:
            model = torch.compile(model)
        return model

    # ---- one step ---------------------------------------------------------------------------
    def _train_step(self, model, raw_model, optimizer, sampler: WindowSampler) -> tuple[float, float]:
        """One optimizer step over ``grad_accum`` micro-batches; returns (mean loss, gradient norm).

        Micro-batch ``m`` of the step is global samples ``position + m*B .. + (m+1)*B - 1``;
        rank ``r`` takes the ``r``-th slice of ``B / world_size`` of them. In one process,
        a stop (callback or signal) asked for between micro-batches discards the partial
        step (``_StepAborted``), so Stop is felt within one micro-batch, not one step.
        """
        cfg, dist = self.cfg, self.dist
        loss_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        for micro in range(cfg.grad_accum):
            if micro and not dist.enabled and self._stop_wanted():
                optimizer.zero_grad(set_to_none=True)
                raise _StepAborted
            first = self.state.data_position + micro * cfg.batch_size + dist.rank * self.per_rank
            x, y = sampler.batch(first, self.per_rank)
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            last = micro == cfg.grad_accum - 1
            amp = torch.autocast(self.device.type, dtype=self.autocast_dtype) if self.autocast_dtype else nullcontext()
            with (model.no_sync() if dist.enabled and not last else nullcontext()), amp:
                loss = model(x, y)
            (loss / cfg.grad_accum).backward()  # DDP averages the gradients over ranks
            loss_sum += loss.detach().double()
        loss_mean = loss_sum / cfg.grad_accum
        if dist.enabled:
            dist.all_reduce_sum(loss_mean)
            loss_mean /= dist.world_size
        clip = cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(raw_model.parameters(), clip))
        loss_value = float(loss_mean)
        if not (math.isfinite(loss_value) and math.isfinite(grad_norm)):
            optimizer.zero_grad(set_to_none=True)
            what, bad = ("loss", loss_value) if not math.isfinite(loss_value) else ("gradient norm", grad_norm)
            raise TrainingDiverged(f"{what} became {bad} at step {self.state.step + 1}; training stopped, the last "
                                   f"good checkpoint is {self.state.last_checkpoint or 'none (no checkpoint written yet)'}")
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss_value, grad_norm

    def _log_step(self, loss: float, lr: float, grad_norm: float, throughput: _Throughput) -> dict:
        """The ``train`` record of the step just taken; written every ``log_every`` steps and at the last."""
        step = self.state.step
        record = {"type": "train", "step": step, "tokens": self.state.tokens, "loss": loss, "lr": lr,
                  "grad_norm": grad_norm, "tokens_per_s": throughput.rate(),
                  "peak_mem_mb": _peak_memory_mb(self.device)}
        if step % self.cfg.log_every == 0 or step == self.cfg.steps:
            if self.metrics:
                self.metrics.write(record)
            throughput.reset()
        return record

    def _evaluate(self, evaluator: Evaluator, raw_model) -> None:
        record = evaluator.evaluate(raw_model, self.state.step, self.state.tokens)
        self.state.last_eval = record
        if self.metrics:
            self.metrics.write(record)
        for cb in self.callbacks:
            cb.on_eval(dict(record))

    # ---- stopping -------------------------------------------------------------------------------
    def _stop_wanted(self) -> bool:
        return self.stop["signal"] is not None or any(cb.should_stop() for cb in self.callbacks)

    def _should_stop(self) -> bool:
        wanted = self._stop_wanted()
        if self.dist.enabled:  # every rank stops at the same step
            flag = torch.tensor([1.0 if wanted else 0.0], device=self.device)
            self.dist.all_reduce_max(flag)
            wanted = bool(flag.item())
        return wanted

    # ---- the summary ------------------------------------------------------------------------------
    def _finish(self, *, stopped_early: bool, interrupted_by: str | None = None, error: str | None = None) -> dict:
        cfg, state = self.cfg, self.state
        last = state.last_eval or {}
        manifest = self.data.manifest
        summary = {
            "name": self.out.name,
            "arch": cfg.arch,
            "match": cfg.match,
            "match_by": cfg.match_by,
            "preset": cfg.preset,
            "model_config": self.model_cfg.to_dict(),
            "params": count_params(self.model_cfg).to_dict(),
            "steps": state.step,
            "steps_planned": cfg.steps,
            "tokens_seen": state.tokens,
            "final_val_loss": last.get("val_loss"),
            "final_val_ppl": last.get("val_ppl"),
            "bucket_losses": last.get("bucket_losses"),
            "unigram_entropy": self.unigram_entropy,
            "mean_tokens_per_s": state.tokens / state.train_time_s if state.train_time_s > 0 else None,
            "wall_time_s": state.wall_time_s,
            "lr": cfg.lr,
            "batch_size": cfg.batch_size,
            "seq_len": self.seq_len,
            "hardware": {"device": self.device.type, "device_name": _device_name(self.device),
                         "torch": torch.__version__, "cpu_count": os.cpu_count(),
                         "threads": torch.get_num_threads(),
                         "world_size": self.dist.world_size},
            "data": {"dir": str(cfg.data_dir), "source": manifest.get("source"),
                     "tokenizer": getattr(self.data, "tokenizer_name", manifest.get("tokenizer")),
                     "vocab_size": int(self.data.vocab_size), "content_hash": manifest.get("content_hash")},
            "resumed_from": state.resumed_from,
            "last_checkpoint": state.last_checkpoint,
            "stopped_early": stopped_early,
            "finished": not stopped_early and error is None,
        }
        if interrupted_by:
            summary["interrupted_by"] = interrupted_by
        if error:
            summary["error"] = error
        if self.dist.is_main:
            write_summary(self.out, summary)
        return summary


__all__ = ["TrainConfig", "Trainer", "TrainingDiverged", "build_model_config", "open_data", "train"]
