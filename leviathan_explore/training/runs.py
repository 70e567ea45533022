"""Run directories and sweep directories: their file names, and reading and writing them.

A run directory holds ``config.json``, ``metrics.jsonl``, ``summary.json`` and
``checkpoints/``: ``config.json`` is the ``TrainConfig`` (flat, ``TrainConfig.to_dict()``)
plus the resolved model configuration; ``metrics.jsonl`` holds one JSON object per
line, ``{"type": "train", ...}`` every ``log_every`` steps and ``{"type": "eval", ...}``
every ``eval_every`` steps; ``summary.json`` is rewritten at the end of a run (also an
interrupted one). JSON files are written to a temporary file and moved into place
(``files.write_json_atomic``).

A sweep directory (``analysis.sweep``) holds ``grid.json``, ``selected.json`` and one run
directory per model and learning rate under ``runs/``; a study directory (``analysis.study``)
holds its plan, ``study.json``, and one sweep directory per sweep.

Every module that names one of these files takes the name from here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..config import ModelConfig
from ..files import json_safe, read_json, write_json_atomic, write_text_atomic
from .checkpoint import MODEL_FILE, find_latest_checkpoint

# ---- the names -----------------------------------------------------------------------------------
CONFIG, METRICS, SUMMARY, CHECKPOINTS = "config.json", "metrics.jsonl", "summary.json", "checkpoints"
# Any of these makes a directory a run directory (an unfinished run has no summary yet).
RUN_MARKERS = (CONFIG, METRICS, SUMMARY, CHECKPOINTS)
GRID, SELECTED, SWEEP_RUNS = "grid.json", "selected.json", "runs"
STUDY_FILE = "study.json"


def read_metrics(run_dir: str | Path, kind: str | None = None) -> list[dict]:
    """The lines of ``metrics.jsonl`` (of one ``type`` if given); a torn last line is skipped."""
    path = Path(run_dir) / METRICS
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # a line cut short by a kill
        if kind is None or rec.get("type") == kind:
            out.append(rec)
    return out


def truncate_metrics(run_dir: str | Path, last_step: int) -> None:
    """Keep only the lines with ``step <= last_step`` (a resumed run rewrites what came after)."""
    path = Path(run_dir) / METRICS
    if not path.exists():
        return
    kept = [json.dumps(r) for r in read_metrics(run_dir) if r.get("step", 0) <= last_step]
    write_text_atomic(path, "".join(line + "\n" for line in kept))


class MetricsLog:
    """Appends one JSON line per record and flushes, so a reader sees lines as they come."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / METRICS
        self._file = open(self.path, "a")

    def write(self, record: dict) -> None:
        self._file.write(json.dumps(json_safe(record)) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_summary(run_dir: str | Path) -> dict:
    path = Path(run_dir) / SUMMARY
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: the run has not finished or stopped yet")
    return read_json(path)


def read_config(run_dir: str | Path) -> dict:
    path = Path(run_dir) / CONFIG
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: {run_dir} is not a run directory")
    return read_json(path)


def write_config(run_dir: str | Path, config: dict[str, Any]) -> None:
    write_json_atomic(Path(run_dir) / CONFIG, config)


def write_summary(run_dir: str | Path, summary: dict[str, Any]) -> None:
    write_json_atomic(Path(run_dir) / SUMMARY, json_safe(summary))


def load_run_model(run_dir: str | Path, device: str = "cpu"):
    """The ``TransformerLM`` of a run with the weights of its latest valid checkpoint.

    Reads safetensors and JSON only (nothing is unpickled).
    """
    from safetensors.torch import load_model

    from ..model import TransformerLM

    run_dir = Path(run_dir)
    found = find_latest_checkpoint(run_dir / CHECKPOINTS)
    if found is None:
        raise FileNotFoundError(f"{run_dir / CHECKPOINTS} holds no checkpoint")
    model = TransformerLM(ModelConfig.from_dict(found.state["model_config"]))
    load_model(model, str(found.path / MODEL_FILE), strict=True, device=device)
    return model.to(device).eval()


def initial_model(run_dir: str | Path):
    """The ``TransformerLM`` of a run as it was before its first step.

    The trainer seeds ``torch.manual_seed(config["seed"])`` and then builds the model, so
    rebuilding it the same way (with the caller's random state left untouched) gives the
    exact initial weights: the "before" of a before/after comparison.
    """
    from ..model import TransformerLM

    cfg = read_config(run_dir)
    if "model_config" not in cfg or "seed" not in cfg:
        raise ValueError(f"{Path(run_dir) / CONFIG} lacks model_config or seed: not a training run")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(cfg["seed"]))
        model = TransformerLM(ModelConfig.from_dict(cfg["model_config"]))
    return model.eval()


__all__ = ["CONFIG", "METRICS", "SUMMARY", "CHECKPOINTS", "RUN_MARKERS", "GRID", "SELECTED", "SWEEP_RUNS",
           "STUDY_FILE",
           "read_metrics", "truncate_metrics", "MetricsLog", "read_summary", "read_config", "write_config",
           "write_summary", "load_run_model", "initial_model", "json_safe", "write_json_atomic"]
