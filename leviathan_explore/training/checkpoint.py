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
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn

from .optim import flatten_optimizer_state, unflatten_optimizer_state

CHECKPOINT_FILES = ("model.safetensors", "optimizer.safetensors", "state.json")
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


def _write_json(path: Path, obj: Any) -> None:
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)
        f.flush()
        os.fsync(f.fileno())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(root: Path) -> None:
    """Delete ``.tmp-step_X-PID`` / ``.tmp-prune-step_X-PID`` folders left by a writer killed while
    writing or pruning (its PID no longer runs)."""
    for stale in root.glob(".tmp-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
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
        save_model(model, str(tmp / "model.safetensors"))
        opt_tensors, opt_structure = flatten_optimizer_state(optimizer.state_dict())
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
        full_state = {**state, "step": step, "rng": rng_state(), "optimizer": opt_structure}
        _write_json(tmp / "state.json", full_state)
        for name in ("model.safetensors", "optimizer.safetensors"):
            _fsync(tmp / name)
        manifest = {"step": step, "files": {name: {"sha256": sha256_file(tmp / name),
                                                   "bytes": (tmp / name).stat().st_size}
                                            for name in CHECKPOINT_FILES}}
        _write_json(tmp / "manifest.json", manifest)
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
    manifest_path = path / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
        if not isinstance(files, dict):
            raise TypeError("files")
    except (OSError, ValueError, KeyError, TypeError):
        raise CheckpointError(f"checkpoint {path.name}: manifest.json is missing or unreadable")
    for name in CHECKPOINT_FILES:
        entry = files.get(name)
        if entry is None or not (path / name).is_file():
            raise CheckpointError(f"checkpoint {path.name}: {name} is missing")
        if not isinstance(entry, dict) or not {"bytes", "sha256"} <= entry.keys():  # a damaged manifest entry
            raise CheckpointError(f"checkpoint {path.name}: manifest.json has no size and sha256 for {name}")
        if (path / name).stat().st_size != entry["bytes"] or sha256_file(path / name) != entry["sha256"]:
            raise CheckpointError(f"checkpoint {path.name}: {name} is truncated or corrupt (sha256 mismatch)")
    try:
        return json.loads((path / "state.json").read_text())
    except ValueError:
        raise CheckpointError(f"checkpoint {path.name}: state.json is not valid JSON")


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
        raise CheckpointError(f"checkpoint {name}: state.json has no model_config")
    if saved_cfg.get("vocab_size") != model_config.get("vocab_size"):
        raise CheckpointError(f"checkpoint {name} was trained with vocab_size={saved_cfg.get('vocab_size')} but "
                              f"the data has vocab_size={model_config.get('vocab_size')}; use the same data directory")
    diff = config_difference(saved_cfg, model_config)
    if diff:
        raise CheckpointError(f"checkpoint {name} belongs to a different model ({diff}); "
                              f"use a new --out directory or the original settings")
    try:
        load_model(model, str(found.path / "model.safetensors"), strict=True,
                   device=str(next(model.parameters()).device))
    except (RuntimeError, SafetensorError) as exc:
        raise CheckpointError(f"checkpoint {name}: weights do not fit the model: {str(exc).splitlines()[0]}")
    if optimizer is not None:
        tensors = load_file(str(found.path / "optimizer.safetensors"))
        opt_state = unflatten_optimizer_state(tensors, state["optimizer"])
        try:
            optimizer.load_state_dict(opt_state)
        except (ValueError, KeyError) as exc:
            raise CheckpointError(f"checkpoint {name}: optimizer state does not fit: {exc}")
    restore_rng_state(state.get("rng", {}))
    return state
