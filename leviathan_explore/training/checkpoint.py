"""Checkpoints: safetensors + JSON, written atomically, verified by hash, never unpickled.

Layout of one checkpoint, ``checkpoints/step_0000100/``::

    model.safetensors      the model weights (tied weights stored once)
    optimizer.safetensors  the optimizer's state tensors, named ``state.<param>.<key>``
    state.json             step, data position, schedule, RNG states (base64), optimizer
                           structure, model configuration, timings
    manifest.json          sha256 and size of each file above; written last

A checkpoint is written into a hidden temporary directory, then moved into place
with ``os.replace``: a crash leaves either the old set or the new one, never a
half-written directory under a real name. The newest ``keep`` checkpoints are kept.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn

from ..files import InvalidJsonError, json_safe, pid_alive, read_json, write_json_atomic
from .optim import flatten_optimizer_state, unflatten_optimizer_state

MODEL_FILE, OPTIMIZER_FILE, STATE_FILE, MANIFEST_FILE = ("model.safetensors", "optimizer.safetensors", "state.json",
                                                         "manifest.json")
CHECKPOINT_FILES = (MODEL_FILE, OPTIMIZER_FILE, STATE_FILE)  # what the manifest covers; it is written last
PREFIX = "step_"


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, or belongs to a different model. The message names it."""


def checkpoint_name(step: int) -> str:
    return f"{PREFIX}{step:07d}"


def list_checkpoints(root: str | Path) -> list[Path]:
    """Checkpoint directories under ``root``, oldest first (temporary directories excluded)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        if p.is_dir() and p.name.startswith(PREFIX) and p.name[len(PREFIX):].isdigit():
            found.append((int(p.name[len(PREFIX):]), p))
    return [p for _, p in sorted(found)]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def remove_stale_temporaries(root: Path) -> None:
    """Delete ``.tmp-step_X-PID`` / ``.tmp-prune-step_X-PID`` folders left by a writer killed while
    writing or pruning (its PID no longer runs)."""
    for stale in root.glob(".tmp-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def rng_state() -> dict[str, Any]:
    """Torch RNG states (CPU and every CUDA device) as base64 strings."""
    out = {"torch_cpu": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["torch_cuda"] = [base64.b64encode(s.numpy().tobytes()).decode() for s in torch.cuda.get_rng_state_all()]
    return out


def restore_rng_state(state: dict[str, Any]) -> None:
    def decode(s: str) -> torch.Tensor:
        return torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8)

    if "torch_cpu" in state:
        torch.set_rng_state(decode(state["torch_cpu"]))
    if "torch_cuda" in state and torch.cuda.is_available():
        cuda_states = state["torch_cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([decode(s) for s in cuda_states])


def save_checkpoint(root: str | Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                    state: dict[str, Any], keep: int = 2) -> Path:
    """Write ``root/step_XXXXXXX`` atomically and prune all but the newest ``keep``.

    ``state`` is any JSON-able dict (data position, schedule, config ...); the step,
    RNG states and optimizer structure are added here.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(root)
    final = root / checkpoint_name(step)
    tmp = root / f".tmp-{final.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        save_model(model, str(tmp / MODEL_FILE))
        opt_tensors, opt_structure = flatten_optimizer_state(optimizer.state_dict())
        save_file(opt_tensors, str(tmp / OPTIMIZER_FILE))
        full_state = {**state, "step": step, "rng": rng_state(), "optimizer": opt_structure}
        write_json_atomic(tmp / STATE_FILE, json_safe(full_state))
        for name in (MODEL_FILE, OPTIMIZER_FILE):
            _fsync(tmp / name)
        manifest = {"step": step, "files": {name: {"sha256": sha256_file(tmp / name),
                                                   "bytes": (tmp / name).stat().st_size}
                                            for name in CHECKPOINT_FILES}}
        write_json_atomic(tmp / MANIFEST_FILE, manifest)
        if final.exists():  # re-saving a step (e.g. after a resume): move the old one aside first
            old = root / f".old-{final.name}-{os.getpid()}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in list_checkpoints(root)[:-keep]:
        # renamed first: a kill during the deletion leaves a hidden temporary, not a half-deleted checkpoint
        doomed = root / f".tmp-prune-{old.name}-{os.getpid()}"
        os.replace(old, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
    return final


def verify_checkpoint(path: str | Path) -> dict[str, Any]:
    """Check every file against the manifest; return the parsed ``state.json``.

    Raises ``CheckpointError`` naming the checkpoint and the bad file.
    """
    path = Path(path)
    try:
        manifest = read_json(path / MANIFEST_FILE)
        files = manifest["files"]
        if not isinstance(files, dict):
            raise TypeError("files")
    except (OSError, ValueError, KeyError, TypeError):
        raise CheckpointError(f"checkpoint {path.name}: {MANIFEST_FILE} is missing or unreadable")
    for name in CHECKPOINT_FILES:
        entry = files.get(name)
        if entry is None or not (path / name).is_file():
            raise CheckpointError(f"checkpoint {path.name}: {name} is missing")
        if not isinstance(entry, dict) or not {"bytes", "sha256"} <= entry.keys():  # a damaged manifest entry
            raise CheckpointError(f"checkpoint {path.name}: {MANIFEST_FILE} has no size and sha256 for {name}")
        if (path / name).stat().st_size != entry["bytes"] or sha256_file(path / name) != entry["sha256"]:
            raise CheckpointError(f"checkpoint {path.name}: {name} is truncated or corrupt (sha256 mismatch)")
    try:
        return read_json(path / STATE_FILE)
    except InvalidJsonError:
        raise CheckpointError(f"checkpoint {path.name}: {STATE_FILE} is not valid JSON")


@dataclass
class FoundCheckpoint:
    path: Path
    state: dict[str, Any]
    skipped: list[str]  # newer checkpoints that failed verification, with the reason


def find_latest_checkpoint(root: str | Path, report: Callable[[str], None] | None = None) -> FoundCheckpoint | None:
    """The newest checkpoint that verifies; corrupt newer ones are reported and skipped.

    Returns None when there is no checkpoint at all; raises ``CheckpointError`` when
    checkpoints exist but none verifies.
    """
    candidates = list_checkpoints(root)
    skipped: list[str] = []
    for path in reversed(candidates):
        try:
            state = verify_checkpoint(path)
        except CheckpointError as exc:
            skipped.append(str(exc))
            if report is not None:
                report(f"{exc}; falling back to the previous checkpoint")
            continue
        return FoundCheckpoint(path=path, state=state, skipped=skipped)
    if candidates:
        raise CheckpointError(f"no valid checkpoint under {root}: {'; '.join(skipped)}")
    return None


def config_difference(saved: dict[str, Any], current: dict[str, Any], prefix: str = "") -> str | None:
    """The first differing field of two nested config dicts, as 'field: saved -> current'."""
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            diff = config_difference(a, b, prefix=f"{prefix}{key}.")
            if diff:
                return diff
        elif a != b:
            return f"{prefix}{key}: checkpoint has {a!r}, this run has {b!r}"
    return None


def load_checkpoint(found: FoundCheckpoint, model: nn.Module, optimizer: torch.optim.Optimizer | None,
                    model_config: dict[str, Any]) -> dict[str, Any]:
    """Load weights (and optimizer state) into ``model`` after checking the configuration matches.

    Returns the checkpoint's state dict. Loading reads safetensors and JSON only.
    """
    state, name = found.state, found.path.name
    saved_cfg = state.get("model_config")
    if saved_cfg is None:
        raise CheckpointError(f"checkpoint {name}: {STATE_FILE} has no model_config")
    if saved_cfg.get("vocab_size") != model_config.get("vocab_size"):
        raise CheckpointError(f"checkpoint {name} was trained with vocab_size={saved_cfg.get('vocab_size')} but "
                              f"the data has vocab_size={model_config.get('vocab_size')}; use the same data directory")
    from ..config import ModelConfig

    diff = config_difference(ModelConfig.with_defaults(saved_cfg), model_config)
    if diff:
        raise CheckpointError(f"checkpoint {name} belongs to a different model ({diff}); "
                              f"use a new --out directory or the original settings")
    try:
        load_model(model, str(found.path / MODEL_FILE), strict=True,
                   device=str(next(model.parameters()).device))
    except (RuntimeError, SafetensorError) as exc:
        raise CheckpointError(f"checkpoint {name}: weights do not fit the model: {str(exc).splitlines()[0]}")
    if optimizer is not None:
        tensors = load_file(str(found.path / OPTIMIZER_FILE))
        opt_state = unflatten_optimizer_state(tensors, state["optimizer"])
        try:
            optimizer.load_state_dict(opt_state)
        except (ValueError, KeyError) as exc:
            raise CheckpointError(f"checkpoint {name}: optimizer state does not fit: {exc}")
    restore_rng_state(state.get("rng", {}))
    return state


class Checkpointer:
    """The checkpoints of one run under ``folder``: one every ``every`` steps (and whenever a
    session ends early), the newest ``keep`` kept, resumed from the newest that verifies.

    A checkpoint holds ``model``, ``optimizer`` and ``train_state.state_dict()``, plus
    ``run_info``: what identifies the run that wrote it (model and training configuration,
    data content hash, world size). Only the main rank writes; every rank waits at
    ``barrier`` until the checkpoint is in place.
    """

    def __init__(self, folder: str | Path, *, every: int, keep: int, model: nn.Module,
                 optimizer: torch.optim.Optimizer, train_state, run_info: dict[str, Any], is_main: bool = True,
                 barrier: Callable[[], None] = lambda: None, report: Callable[[str], None] | None = None):
        self.folder, self.every, self.keep = Path(folder), every, keep
        self.model, self.optimizer, self.train_state, self.run_info = model, optimizer, train_state, run_info
        self.is_main, self.barrier, self.report = is_main, barrier, report

    def save(self, step: int, *, last: bool = False) -> bool:
        """Write the checkpoint of ``step`` if it is due (``step % every == 0``, or ``last``: the
        session's final step) and not written already; returns whether it was written."""
        if not (last or step % self.every == 0) or self.train_state.last_checkpoint == checkpoint_name(step):
            return False
        if self.is_main:
            save_checkpoint(self.folder, step, self.model, self.optimizer,
                            {**self.run_info, **self.train_state.state_dict()}, keep=self.keep)
        self.train_state.last_checkpoint = checkpoint_name(step)
        self.barrier()
        return True

    def load_latest(self) -> dict[str, Any] | None:
        """Load the newest checkpoint that verifies into the model, optimizer, RNGs and train state;
        returns its ``state.json`` (None when there is none). Damaged newer ones are reported and
        skipped; ``CheckpointError`` when all are damaged or one belongs to another model."""
        found = find_latest_checkpoint(self.folder, report=self.report)
        if found is None:
            return None
        state = load_checkpoint(found, self.model, self.optimizer, self.run_info["model_config"])
        self.train_state.load_state_dict(state)
        self.train_state.last_checkpoint = found.path.name
        self.train_state.resumed_from = self.train_state.step
        return state
