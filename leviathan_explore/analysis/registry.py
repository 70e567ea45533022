"""The run registry: every finished training run under some directories, as one table.

A run directory (TRAINING contract) holds ``config.json``, ``metrics.jsonl``,
``summary.json`` and ``checkpoints/``. ``load_runs`` accepts, for each argument,

* a run directory itself (it has ``summary.json``),
* a sweep directory (it has ``runs/``): every ``runs/*/``,
* any other directory: every immediate subdirectory that looks like a run
  (has ``summary.json``, ``config.json``, ``metrics.jsonl`` or ``checkpoints/``).

Compute is counted as ``flops = 6 * (body + head + generator) * tokens``: the
usual 6 N T estimate (forward + backward) over every parameter that does
arithmetic on each token, i.e. the non-embedding parameters including the
output head and the Leviathan generator. Input-table lookups are free. (The
generator term over-counts: it is evaluated once per distinct id in a batch,
not once per position.)
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

PARAM_BLOCKS = ("embedding", "generator", "body", "head")
BUCKETS = ("frequent", "medium", "rare")
RUN_MARKERS = ("summary.json", "config.json", "metrics.jsonl", "checkpoints")

# Column order of the table load_runs returns.
RUN_COLUMNS = [
    "name", "run_dir", "size", "arch", "match", "match_by", "preset",
    *PARAM_BLOCKS, "total", "non_embedding", "n_layers", "d_model", "vocab_size",
    "steps", "tokens", "flops", "lr",
    "final_val_loss", "final_val_ppl", *(f"loss_{b}" for b in BUCKETS),
    "mean_tokens_per_s", "wall_time_s", "finished", "stopped_early",
    "device", "device_name", "cpu_count", "torch",
    "data_tokenizer", "data_vocab_size", "data_content_hash",
]


class RegistryError(ValueError):
    """A run directory cannot be read; the message names the directory or file."""


def training_flops(params: dict[str, int], tokens: float) -> float:
    """6 x (body + head + generator) x tokens; the input table's lookups cost nothing."""
    return 6.0 * (params["body"] + params["head"] + params.get("generator", 0)) * float(tokens)


def _read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise RegistryError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None


def _is_run_dir(path: Path) -> bool:
    return path.is_dir() and any((path / m).exists() for m in RUN_MARKERS)


def find_run_dirs(*dirs: str | Path, skip_incomplete: bool = False) -> list[Path]:
    """The run directories under ``dirs`` (see the module docstring), sorted by name per argument.

    A run directory without ``summary.json`` is an error naming it, unless
    ``skip_incomplete`` (a sweep still in progress).
    """
    if not dirs:
        raise RegistryError("no directory given: pass one or more run or sweep directories")
    found: list[Path] = []
    for d in dirs:
        root = Path(d)
        if not root.exists():
            raise FileNotFoundError(f"{root}: no such directory")
        if not root.is_dir():
            raise RegistryError(f"{root}: not a directory; pass a run or sweep directory")
        if (root / "summary.json").is_file():
            candidates = [root]
        else:
            parent = root / "runs" if (root / "runs").is_dir() else root
            candidates = sorted(p for p in parent.iterdir() if _is_run_dir(p))
        if not candidates:
            raise RegistryError(f"{root}: no runs found (no subdirectory with summary.json)")
        for run in candidates:
            if not (run / "summary.json").is_file():
                if skip_incomplete:
                    continue
                raise RegistryError(f"run {run}: missing summary.json (unfinished or crashed run)")
            found.append(run)
    if not found:
        raise RegistryError(f"{', '.join(map(str, dirs))}: no finished runs (none has summary.json)")
    return found


def _finite_or_error(value: Any, what: str, run: Path) -> float | None:
    if value is None:
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise RegistryError(f"run {run}: {what}={value!r} is not a number") from None
    if not math.isfinite(x):
        raise RegistryError(f"run {run}: {what}={value!r} is not finite (diverged run?)")
    return x


def summary_row(run_dir: str | Path) -> dict[str, Any]:
    """One row of the registry from ``run_dir/summary.json``."""
    run = Path(run_dir)
    path = run / "summary.json"
    if not path.is_file():
        raise RegistryError(f"run {run}: missing summary.json")
    s = _read_json(path)
    if not isinstance(s, dict):
        raise RegistryError(f"{path}: expected a JSON object, got {type(s).__name__}")
    params = s.get("params")
    if not isinstance(params, dict) or any(k not in params for k in ("body", "head")):
        raise RegistryError(f"{path}: 'params' must be a parameter breakdown with body and head")
    blocks = {k: int(params.get(k, 0)) for k in PARAM_BLOCKS}
    loss = _finite_or_error(s.get("final_val_loss"), "final_val_loss", run)
    if loss is None:
        raise RegistryError(f"run {run}: summary.json has no final_val_loss")
    buckets = s.get("bucket_losses") or {}
    mc = s.get("model_config") or {}
    hw = s.get("hardware") or {}
    data = s.get("data") or {}
    tokens = s.get("tokens_seen")
    if tokens is None:
        raise RegistryError(f"{path}: missing tokens_seen")
    row = {
        "name": s.get("name") or run.name,
        "run_dir": str(run),
        "size": None,  # a sweep's size label (load_for_fit fills it from selected.json)
        "arch": s.get("arch"),
        "match": s.get("match"),
        "match_by": s.get("match_by"),
        "preset": s.get("preset"),
        **blocks,
        "total": sum(blocks.values()),
        "non_embedding": blocks["body"] + blocks["head"],
        "n_layers": params.get("n_layers", mc.get("n_layers")),
        "d_model": params.get("d_model", mc.get("d_model")),
        "vocab_size": mc.get("vocab_size", data.get("vocab_size")),
        "steps": s.get("steps"),
        "tokens": int(tokens),
        "flops": training_flops(blocks, tokens),
        "lr": s.get("lr"),
        "final_val_loss": loss,
        "final_val_ppl": _finite_or_error(s.get("final_val_ppl"), "final_val_ppl", run),
        **{f"loss_{b}": _finite_or_error(buckets.get(b), f"bucket_losses.{b}", run) for b in BUCKETS},
        "mean_tokens_per_s": s.get("mean_tokens_per_s"),
        "wall_time_s": s.get("wall_time_s"),
        "finished": bool(s.get("finished", False)),
        "stopped_early": bool(s.get("stopped_early", False)),
        "device": hw.get("device"),
        "device_name": hw.get("device_name"),
        "cpu_count": hw.get("cpu_count"),
        "torch": hw.get("torch"),
        "data_tokenizer": data.get("tokenizer"),
        "data_vocab_size": data.get("vocab_size"),
        "data_content_hash": data.get("content_hash"),
    }
    return row


def load_runs(*dirs: str | Path, skip_incomplete: bool = False) -> pd.DataFrame:
    """One row per run under ``dirs`` with the columns of ``RUN_COLUMNS``.

    Raises ``RegistryError`` (a ``ValueError``) naming the directory or file for:
    an empty directory, a run without ``summary.json``, unparsable JSON, a
    non-finite loss. ``FileNotFoundError`` for a directory that does not exist.
    """
    rows = [summary_row(r) for r in find_run_dirs(*dirs, skip_incomplete=skip_incomplete)]
    df = pd.DataFrame(rows, columns=RUN_COLUMNS)
    dup = df["name"][df["name"].duplicated()]
    if len(dup):
        raise RegistryError(f"run name {dup.iloc[0]!r} appears twice; pass each run directory once")
    return df


def selected_run_dirs(sweep_dir: str | Path) -> list[tuple[Path, str | None]]:
    """(run directory, size label) of the best-LR run of each model, from ``sweep_dir/selected.json``."""
    root = Path(sweep_dir)
    path = root / "selected.json"
    sel = _read_json(path)
    models = sel.get("models") if isinstance(sel, dict) else None
    if not isinstance(models, dict) or not models or not all(isinstance(m, dict) and "run" in m
                                                             for m in models.values()):
        raise RegistryError(f"{path}: expected {{'models': {{MODEL: {{'run': RUN_NAME, ...}}}}}}")
    return [(root / "runs" / m["run"], m.get("size")) for m in models.values()]


def load_for_fit(*dirs: str | Path) -> pd.DataFrame:
    """Like ``load_runs``, but a sweep directory contributes only its selected (best-LR) runs,
    with their ``size`` label (a Leviathan run's matched dense model is the one of its size)."""
    if not dirs:
        raise RegistryError("no directory given: pass one or more run or sweep directories")
    rows: list[dict[str, Any]] = []
    for d in dirs:
        if (Path(d) / "selected.json").is_file():
            for run, size in selected_run_dirs(d):
                rows.append({**summary_row(run), "size": size})
        else:
            rows.extend(summary_row(r) for r in find_run_dirs(d))
    df = pd.DataFrame(rows, columns=RUN_COLUMNS)
    dup = df["name"][df["name"].duplicated()]
    if len(dup):
        raise RegistryError(f"run name {dup.iloc[0]!r} appears twice; pass each run directory once")
    return df


def _flatten_metrics(record: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in record.items() if k != "bucket_losses"}
    for b, v in (record.get("bucket_losses") or {}).items():
        out[f"loss_{b}"] = v
    return out


def load_curves(run_dir: str | Path) -> pd.DataFrame:
    """``metrics.jsonl`` as a table: one row per line, ``bucket_losses`` flattened to ``loss_<bucket>``.

    Train rows have loss/lr/grad_norm/tokens_per_s; eval rows have val_loss/val_ppl/buckets
    (the other columns are NaN). Sorted by step, train before eval at equal step.
    """
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (is {run_dir} a run directory?)")
    rows = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise RegistryError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
            if not isinstance(rec, dict) or "type" not in rec or "step" not in rec:
                raise RegistryError(f"{path}:{lineno}: expected an object with 'type' and 'step'")
            rows.append(_flatten_metrics(rec))
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=["type", "step", "tokens"])
    order = df["type"].map({"train": 0, "eval": 1}).fillna(2)
    return df.assign(_o=order).sort_values(["step", "_o"], kind="stable").drop(columns="_o").reset_index(drop=True)


def eval_curve(run_dir: str | Path) -> pd.DataFrame:
    """The eval rows of ``load_curves``: step, tokens, val_loss, val_ppl, bucket losses."""
    df = load_curves(run_dir)
    if "type" not in df or df.empty:
        return df
    return df[df["type"] == "eval"].dropna(axis=1, how="all").reset_index(drop=True)

