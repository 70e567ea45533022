"""A run directory: ``config.json``, ``metrics.jsonl``, ``summary.json``, ``checkpoints/``.

``config.json`` is the ``TrainConfig`` plus the resolved model configuration;
``metrics.jsonl`` holds one JSON object per line, ``{"type": "train", ...}`` every
``log_every`` steps and ``{"type": "eval", ...}`` every ``eval_every`` steps;
``summary.json`` is rewritten at the end of a run (also an interrupted one).
JSON files are written to a temporary file and moved into place.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from ..config import ModelConfig
from .checkpoint import find_latest_checkpoint

CONFIG, METRICS, SUMMARY, CHECKPOINTS = "config.json", "metrics.jsonl", "summary.json", "checkpoints"


def json_safe(obj: Any) -> Any:
    """``obj`` with NaN and infinite floats replaced by None (strict JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write JSON to a temporary file next to ``path``, then ``os.replace`` it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, allow_nan=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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
    fd, tmp = tempfile.mkstemp(prefix=f".{METRICS}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write("".join(line + "\n" for line in kept))
    os.replace(tmp, path)


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
    return json.loads(path.read_text())


def read_config(run_dir: str | Path) -> dict:
    path = Path(run_dir) / CONFIG
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: {run_dir} is not a run directory")
    return json.loads(path.read_text())


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
    load_model(model, str(found.path / "model.safetensors"), strict=True, device=device)
    return model.to(device).eval()
