"""The trainer: composes the model, optimizer, schedule, batches, evaluation, checkpoints and run files.

``train(cfg, callbacks)`` runs one training run and returns its summary. Callbacks
are objects with any of ``on_step(metrics)`` (every optimizer step, the dict of a
``train`` line), ``on_eval(metrics)`` (every evaluation, the dict of an ``eval``
line) and ``should_stop() -> bool`` (polled before each step; True stops cleanly:
a checkpoint and ``summary.json`` with ``"stopped_early": true`` are written).

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
from .batches import WindowSampler, eval_window_starts
from .checkpoint import checkpoint_name, find_latest_checkpoint, load_checkpoint, save_checkpoint
from .config import RESUME_CRITICAL, TrainConfig
from .distributed import DistInfo, init_distributed
from .evaluation import evaluate, frequency_buckets, unigram_entropy
from .optim import build_optimizer
from .progress import TrainingProgress
from .runs import (CHECKPOINTS, CONFIG, METRICS, SUMMARY, MetricsLog, json_safe, read_config, truncate_metrics,
                   write_json_atomic)
from .schedule import WarmupCosine

# Model construction draws from the global torch RNG; the lock keeps two trainers in
# one process (dashboard threads) from interleaving their seeded initialisations.
_INIT_LOCK = threading.Lock()


class TrainingDiverged(RuntimeError):
    """The loss or gradient norm became NaN or infinite. The message names the step."""


class _StepAborted(Exception):
    """A stop was asked for between micro-batches: the partial step is discarded."""


def build_model_config(cfg: TrainConfig, vocab_size: int) -> ModelConfig:
    """The model a run trains: the preset's dense model with the data's vocabulary and
    ``cfg.model`` overrides, then for Leviathan its iso-body or isoparametric match."""
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
        return isobody_match(dense)
    return isoparametric_match(dense, by=cfg.match_by).config


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

    ``data``: an already loaded ``TokenData`` (default: ``load_token_data(cfg.data_dir)``).
    Raises ``TrainingDiverged`` on a non-finite loss, after writing the summary.
    """
    cfg.validate()
    dist = init_distributed(cfg.device)
    try:
        return _Run(cfg, list(callbacks), data, dist).execute()
    finally:
        dist.close()


class _Run:
    def __init__(self, cfg: TrainConfig, callbacks: list, data, dist: DistInfo):
        self.cfg, self.callbacks, self.dist = cfg, callbacks, dist
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

    def say(self, message: str) -> None:
        if self.dist.is_main:
            print(f"[train {self.out.name}] {message}", file=sys.stderr, flush=True)

    # ---- set-up ------------------------------------------------------------------------
    def _check_run_dir(self):
        cfg, out = self.cfg, self.out
        existing = [n for n in (CONFIG, METRICS, SUMMARY, CHECKPOINTS) if (out / n).exists()]
        if not cfg.resume:
            if existing:
                raise ValueError(f"out_dir {str(out)!r} already holds a run ({existing[0]}); "
                                 f"pass --resume to continue it or choose another --out")
            return None
        if (out / CONFIG).exists():
            saved = read_config(out)
            current = cfg.to_dict()
            for name in RESUME_CRITICAL:
                if name in saved and saved[name] != current[name]:
                    raise ConfigError(name, current[name], f"differs from the run's {saved[name]!r}; "
                                      f"resume with the original setting or use a new --out")
        found = find_latest_checkpoint(out / CHECKPOINTS, report=self.say)
        if found is None:
            self.say(f"no checkpoint in {out / CHECKPOINTS}; starting from step 0")
        return found

    def _build_model(self) -> TransformerLM:
        with _INIT_LOCK, torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.cfg.seed)
            model = TransformerLM(self.model_cfg)
        return model.to(self.device)

    # ---- the run -------------------------------------------------------------------------
    def execute(self) -> dict:
        cfg, dist = self.cfg, self.dist
        session_start = time.perf_counter()
        found = self._check_run_dir()
        dist.barrier()  # every rank has inspected the directory before rank 0 writes to it

        raw_model = self._build_model()
        optimizer = build_optimizer(raw_model, lr=cfg.lr, weight_decay=cfg.weight_decay,
                                    device_type=self.device.type)
        schedule = WarmupCosine(cfg.lr, cfg.steps, cfg.effective_warmup_steps, cfg.min_lr_ratio)
        data_hash = self.data.manifest.get("content_hash")

        self.step, self.data_position = 0, 0
        self.prev_wall, self.prev_train_time = 0.0, 0.0
        self.last_eval: dict | None = None
        self.last_checkpoint: str | None = None
        self.resumed_from: int | None = None
        if found is not None:
            if found.state.get("world_size", dist.world_size) != dist.world_size:
                self.say(f"checkpoint {found.path.name} was written with {found.state['world_size']} ranks; "
                         f"continuing with {dist.world_size} (same global batch, same data order)")
            state = load_checkpoint(found, raw_model, optimizer, self.model_cfg.to_dict())
            if data_hash and state.get("data_content_hash") not in (None, data_hash):
                self.say(f"warning: checkpoint {found.path.name} was trained on data with content hash "
                         f"{state['data_content_hash']}, {cfg.data_dir} has {data_hash}")
            self.step, self.data_position = int(state["step"]), int(state["data_position"])
            self.prev_wall, self.prev_train_time = state.get("wall_time_s", 0.0), state.get("train_time_s", 0.0)
            self.last_eval = state.get("last_eval")
            self.last_checkpoint = found.path.name
            self.resumed_from = self.step
            self.say(f"resumed from {found.path.name} (step {self.step})")
        if self.step > cfg.steps:
            raise ConfigError("steps", cfg.steps, f"must be >= the checkpoint's step {self.step} to resume")

        if dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            truncate_metrics(self.out, self.step)  # lines logged after the checkpoint are redone
            write_json_atomic(self.out / CONFIG, {**cfg.to_dict(), "model_config": self.model_cfg.to_dict(),
                                                  "world_size": dist.world_size})
        self.metrics = MetricsLog(self.out) if dist.is_main else None

        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        model = raw_model
        if dist.enabled:
            from torch.nn.parallel import DistributedDataParallel
            model = DistributedDataParallel(raw_model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if cfg.compile:
            model = torch.compile(model)

        sampler = WindowSampler(self.data.train, self.seq_len, cfg.seed, split="train")
        val = WindowSampler(self.data.val, self.seq_len, cfg.seed, split="validation")
        val_windows = val.windows(eval_window_starts(len(self.data.val), self.seq_len,
                                                     cfg.eval_batches * cfg.batch_size))[dist.rank::dist.world_size]
        counts = np.asarray(self.data.token_counts())
        bucket_of = torch.from_numpy(frequency_buckets(counts))
        self.unigram_entropy = unigram_entropy(counts)

        self.session_tokens, self.session_train_time = 0, 0.0
        stop = {"signal": None}
        bar = TrainingProgress(cfg.steps, self.step, self.out.name, enabled=cfg.progress and dist.is_main)
        log_tokens, log_time = 0, 0.0
        try:
            with _stop_on_signals(stop):
                while self.step < cfg.steps:
                    if self._should_stop(stop):
                        break
                    t0 = time.perf_counter()
                    lr = schedule.apply(optimizer, self.step)
                    try:
                        loss_value, grad_norm = self._train_step(model, raw_model, optimizer, sampler, stop)
                    except _StepAborted:  # a stop asked for mid-step: this step never happened
                        break
                    self.step += 1
                    self.data_position += cfg.grad_accum * cfg.batch_size
                    elapsed = time.perf_counter() - t0
                    self.session_train_time += elapsed
                    self.session_tokens += cfg.tokens_per_step
                    log_tokens += cfg.tokens_per_step
                    log_time += elapsed

                    tokens = self.step * cfg.tokens_per_step
                    record = {"type": "train", "step": self.step, "tokens": tokens, "loss": loss_value, "lr": lr,
                              "grad_norm": grad_norm, "tokens_per_s": log_tokens / max(log_time, 1e-9),
                              "peak_mem_mb": _peak_memory_mb(self.device)}
                    if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                        if self.metrics:
                            self.metrics.write(record)
                        log_tokens, log_time = 0, 0.0
                    bar.update(self.step, loss_value, record["tokens_per_s"])
                    for cb in self.callbacks:
                        if hasattr(cb, "on_step"):
                            cb.on_step(dict(record))
                    if self.step % cfg.eval_every == 0 or self.step == cfg.steps:
                        self._evaluate(raw_model, val_windows, bucket_of, tokens)
                    if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
                        self._checkpoint(raw_model, optimizer, schedule, session_start, data_hash)
            stopped_early = self.step < cfg.steps
            if stopped_early and self.last_checkpoint != checkpoint_name(self.step):
                self._checkpoint(raw_model, optimizer, schedule, session_start, data_hash)
            if stop["signal"]:
                self.say(f"{stop['signal']} received: stopped at step {self.step}, checkpoint {self.last_checkpoint}; "
                         f"continue with --resume")
            return self._finish(session_start, stopped_early=stopped_early, interrupted_by=stop["signal"])
        except TrainingDiverged as exc:
            self._finish(session_start, stopped_early=True, error=str(exc))
            raise
        finally:
            bar.close()
            if self.metrics:
                self.metrics.close()

    def _train_step(self, model, raw_model, optimizer, sampler: WindowSampler,
                    stop: dict | None = None) -> tuple[float, float]:
        """One optimizer step over ``grad_accum`` micro-batches; returns (mean loss, gradient norm).

        Micro-batch ``m`` of the step is global samples ``position + m*B .. + (m+1)*B - 1``;
        rank ``r`` takes the ``r``-th slice of ``B / world_size`` of them. In one process,
        a stop (callback or signal) asked for between micro-batches discards the partial
        step (``_StepAborted``), so Stop is felt within one micro-batch, not one step.
        """
        cfg, dist = self.cfg, self.dist
        loss_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        for micro in range(cfg.grad_accum):
            if micro and stop is not None and not dist.enabled and self._stop_wanted(stop):
                optimizer.zero_grad(set_to_none=True)
                raise _StepAborted
            first = self.data_position + micro * cfg.batch_size + dist.rank * self.per_rank
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
            raise TrainingDiverged(f"{what} became {bad} at step {self.step + 1}; training stopped, the last good "
                                   f"checkpoint is {self.last_checkpoint or 'none (no checkpoint written yet)'}")
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss_value, grad_norm

    def _stop_wanted(self, stop: dict) -> bool:
        return stop["signal"] is not None or any(cb.should_stop() for cb in self.callbacks
                                                 if hasattr(cb, "should_stop"))

    def _should_stop(self, stop: dict) -> bool:
        wanted = self._stop_wanted(stop)
        if self.dist.enabled:  # every rank stops at the same step
            flag = torch.tensor([1.0 if wanted else 0.0], device=self.device)
            self.dist.all_reduce_max(flag)
            wanted = bool(flag.item())
        return wanted

    def _evaluate(self, raw_model, val_windows, bucket_of, tokens: int) -> None:
        result = evaluate(raw_model, val_windows, bucket_of, max(1, self.per_rank), self.device,
                          self.autocast_dtype, all_reduce=self.dist.all_reduce_sum if self.dist.enabled else None)
        record = {"type": "eval", "step": self.step, "tokens": tokens, "val_loss": result["val_loss"],
                  "val_ppl": result["val_ppl"], "bucket_losses": result["bucket_losses"]}
        self.last_eval = record
        if self.metrics:
            self.metrics.write(record)
        for cb in self.callbacks:
            if hasattr(cb, "on_eval"):
                cb.on_eval(dict(record))

    def _checkpoint(self, raw_model, optimizer, schedule, session_start: float, data_hash) -> None:
        if self.dist.is_main:
            state = {
                "data_position": self.data_position,
                "scheduler": schedule.state_dict(),
                "model_config": self.model_cfg.to_dict(),
                "arch": self.cfg.arch,
                "train_config": self.cfg.to_dict(),
                "tokens_seen": self.step * self.cfg.tokens_per_step,
                "wall_time_s": self.prev_wall + time.perf_counter() - session_start,
                "train_time_s": self.prev_train_time + self.session_train_time,
                "last_eval": self.last_eval,
                "data_content_hash": data_hash,
                "world_size": self.dist.world_size,
            }
            save_checkpoint(self.out / CHECKPOINTS, self.step, raw_model, optimizer, state,
                            keep=self.cfg.keep_checkpoints)
        self.last_checkpoint = checkpoint_name(self.step)
        self.dist.barrier()

    def _finish(self, session_start: float, *, stopped_early: bool, interrupted_by: str | None = None,
                error: str | None = None) -> dict:
        cfg = self.cfg
        train_time = self.prev_train_time + self.session_train_time
        tokens_seen = self.step * cfg.tokens_per_step
        last = self.last_eval or {}
        manifest = self.data.manifest
        summary = {
            "name": self.out.name,
            "arch": cfg.arch,
            "match": cfg.match,
            "match_by": cfg.match_by,
            "preset": cfg.preset,
            "model_config": self.model_cfg.to_dict(),
            "params": count_params(self.model_cfg).to_dict(),
            "steps": self.step,
            "steps_planned": cfg.steps,
            "tokens_seen": tokens_seen,
            "final_val_loss": last.get("val_loss"),
            "final_val_ppl": last.get("val_ppl"),
            "bucket_losses": last.get("bucket_losses"),
            "unigram_entropy": self.unigram_entropy,
            "mean_tokens_per_s": tokens_seen / train_time if train_time > 0 else None,
            "wall_time_s": self.prev_wall + time.perf_counter() - session_start,
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
            "resumed_from": self.resumed_from,
            "last_checkpoint": self.last_checkpoint,
            "stopped_early": stopped_early,
            "finished": not stopped_early and error is None,
        }
        if interrupted_by:
            summary["interrupted_by"] = interrupted_by
        if error:
            summary["error"] = error
        if self.dist.is_main:
            write_json_atomic(self.out / SUMMARY, json_safe(summary))
        return summary


__all__ = ["TrainConfig", "TrainingDiverged", "build_model_config", "open_data", "train"]
