"""The run registry: every finished training run under some directories, as one table.

A run directory (TRAINING contract) holds ``config.json``, ``metrics.jsonl``,
``summary.json`` and ``checkpoints/``. ``load_runs`` accepts, for each argument,

* a run directory itself (it has ``summary.json``),
* a sweep directory (it has ``runs/``): every ``runs/*/``,
* any other directory: every immediate subdirectory that looks like a run
  (has ``summary.json``, ``config.json``, ``metrics.jsonl`` or ``checkpoints/``).

Compute is counted by ``flops.training_flops``: ``6 * (body + head + generator) *
tokens``, the input table free (see ``leviathan_explore/flops.py`` for why).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..files import InvalidJsonError, read_json
from ..flops import training_flops
from ..training.runs import CHECKPOINTS, CONFIG, GRID, METRICS, RUN_MARKERS, SELECTED, SUMMARY, SWEEP_RUNS

from ..config import TOKEN_REPRS

RUN_ARCHS = ("dense", *(r for r in TOKEN_REPRS if r != "table"))
PARAM_BLOCKS = ("embedding", "generator", "body", "head")
BUCKETS = ("frequent", "medium", "rare")

# Column order of the table load_runs returns.
RUN_COLUMNS = [
    "name", "run_dir", "size", "arch", "tied", "match", "match_by", "preset",
    *PARAM_BLOCKS, "total", "non_embedding", "n_layers", "d_model", "vocab_size",
    "steps", "tokens", "flops", "lr",
    "final_val_loss", "final_val_ppl", *(f"loss_{b}" for b in BUCKETS),
    "mean_tokens_per_s", "wall_time_s", "finished", "stopped_early",
    "device", "device_name", "cpu_count", "torch",
    "data_tokenizer", "data_vocab_size", "data_content_hash",
]


class RegistryError(ValueError):
    """A run directory cannot be read; the message names the directory or file."""


def _read_json(path: Path) -> Any:
    """``files.read_json`` with a ``RegistryError`` (what this module's callers catch) for a torn file."""
    try:
        return read_json(path)
    except InvalidJsonError as exc:
        raise RegistryError(str(exc)) from None


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
        if (root / SUMMARY).is_file():
            candidates = [root]
        else:
            parent = root / SWEEP_RUNS if (root / SWEEP_RUNS).is_dir() else root
            candidates = sorted(p for p in parent.iterdir() if _is_run_dir(p))
        if not candidates:
            raise RegistryError(f"{root}: no runs found (no subdirectory with {SUMMARY})")
        for run in candidates:
            if not (run / SUMMARY).is_file():
                if skip_incomplete:
                    continue
                raise RegistryError(f"run {run}: missing {SUMMARY} (unfinished or crashed run)")
            found.append(run)
    if not found:
        raise RegistryError(f"{', '.join(map(str, dirs))}: no finished runs (none has {SUMMARY})")
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
    path = run / SUMMARY
    if not path.is_file():
        raise RegistryError(f"run {run}: missing {SUMMARY}")
    s = _read_json(path)
    if not isinstance(s, dict):
        raise RegistryError(f"{path}: expected a JSON object, got {type(s).__name__}")
    params = s.get("params")
    if not isinstance(params, dict) or any(k not in params for k in ("body", "head")):
        raise RegistryError(f"{path}: 'params' must be a parameter breakdown with body and head")
    blocks = {k: int(params.get(k, 0)) for k in PARAM_BLOCKS}
    loss = _finite_or_error(s.get("final_val_loss"), "final_val_loss", run)
    if loss is None:
        raise RegistryError(f"run {run}: {SUMMARY} has no final_val_loss")
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
        "size": None,  # a sweep's size label (load_for_fit fills it from the sweep's selected.json)
        "arch": s.get("arch"),
        "tied": bool(mc.get("tie_embeddings", False)),
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
    path = root / SELECTED
    sel = _read_json(path)
    models = sel.get("models") if isinstance(sel, dict) else None
    if not isinstance(models, dict) or not models or not all(isinstance(m, dict) and "run" in m
                                                             for m in models.values()):
        raise RegistryError(f"{path}: expected {{'models': {{MODEL: {{'run': RUN_NAME, ...}}}}}}")
    return [(root / SWEEP_RUNS / m["run"], m.get("size")) for m in models.values()]


def load_for_fit(*dirs: str | Path) -> pd.DataFrame:
    """Like ``load_runs``, but a sweep directory contributes only its selected (best-LR) runs,
    with their ``size`` label (a Leviathan run's matched dense model is the one of its size)."""
    if not dirs:
        raise RegistryError("no directory given: pass one or more run or sweep directories")
    rows: list[dict[str, Any]] = []
    for d in dirs:
        if (Path(d) / SELECTED).is_file():
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
    path = Path(run_dir) / METRICS
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


def run_curves(run_dir: str | Path, x: str = "step") -> dict[str, list[float]]:
    """A run's train and validation losses for ``viz.training.loss_curves_figure``.

    x: "step" or "tokens". Returns {"train_x", "train_loss", "val_x", "val_loss"}.
    """
    if x not in ("step", "tokens"):
        raise ValueError(f"x={x!r} is invalid: must be 'step' or 'tokens'")
    df = load_curves(run_dir)
    train = df[df["type"] == "train"] if "loss" in df else df.iloc[0:0]
    val = df[df["type"] == "eval"] if "val_loss" in df else df.iloc[0:0]
    return {"train_x": train[x].tolist(), "train_loss": train["loss"].tolist() if len(train) else [],
            "val_x": val[x].tolist(), "val_loss": val["val_loss"].tolist() if len(val) else []}



# ---- runs directories as a browser sees them: every run with its status ------------------------

RUN_STATUSES = ("finished", "stopped", "failed", "incomplete")
# Directories a scan never enters: a run's own checkpoints.
_NOT_RUNS = (CHECKPOINTS,)


@dataclass(frozen=True)
class RunRecord:
    """One run directory under a runs directory, whatever state it is in.

    status: "finished" (summary says so), "stopped" (stopped early: Stop, a closed page,
    Ctrl-C), "failed" (summary records an error, e.g. a diverged loss) or "incomplete"
    (no summary.json yet: still running, or crashed).
    """

    name: str                 # path relative to the runs directory, e.g. "web-1/leviathan"
    path: Path
    status: str
    arch: str | None
    summary: dict | None      # None while incomplete
    mtime: float              # of summary.json (else of the directory): "newest" sorts by it
    reason: str = ""          # why a run is failed or incomplete

    @property
    def steps(self) -> int | None:
        return None if self.summary is None else self.summary.get("steps")

    @property
    def final_val_loss(self) -> float | None:
        loss = None if self.summary is None else self.summary.get("final_val_loss")
        try:
            loss = None if loss is None else float(loss)
        except (TypeError, ValueError):
            return None
        return loss if loss is not None and math.isfinite(loss) else None

    @property
    def label(self) -> str:
        """'web-1/leviathan: Leviathan isoparam, 300 steps, val loss 4.693 (finished)'."""
        return f"{self.name}: {run_description(self)}"


def run_description(record: RunRecord) -> str:
    """'Leviathan isoparam, 300 of 400 steps, val loss 4.693 (stopped)' for a record."""
    s = record.summary or {}
    what = {"dense": "dense", "leviathan": "Leviathan"}.get(record.arch or "", record.arch or "run")
    if record.arch == "dense" and (s.get("model_config") or {}).get("tie_embeddings"):
        what += " tied"
    if record.arch not in (None, "dense") and s.get("match"):
        what += f" {s['match']}"
    bits = [what]
    if record.summary is not None:
        planned = s.get("steps_planned")
        steps = s.get("steps")
        bits.append(f"{steps} of {planned} steps" if planned not in (None, steps) else f"{steps} steps")
        loss = record.final_val_loss
        bits.append("no val loss" if loss is None else f"val loss {loss:.3f}")
    return ", ".join(bits) + f" ({record.status}{': ' + record.reason if record.reason else ''})"


def summary_status(summary: dict) -> tuple[str, str]:
    """(status, reason) of a run from its ``summary.json``."""
    if summary.get("error"):
        return "failed", str(summary["error"]).splitlines()[0]
    if summary.get("finished"):
        return "finished", ""
    return "stopped", f"at step {summary.get('steps')}" + (
        f" by {summary['interrupted_by']}" if summary.get("interrupted_by") else "")


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def scan_runs(runs_dir: str | Path, max_depth: int = 2) -> tuple[list[RunRecord], list[str]]:
    """Every run directory up to ``max_depth`` levels below ``runs_dir``, newest first.

    A directory with ``summary.json`` is a run (finished, stopped or failed); one with
    another run marker (config.json, metrics.jsonl, checkpoints/) but no summary is an
    incomplete run; any other directory is searched further. Symbolic links are never
    followed. Returns (records, problems): a corrupt summary is a problem naming its
    file, not an exception. FileNotFoundError when ``runs_dir`` does not exist.
    """
    root = Path(runs_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"runs directory {str(root)!r} does not exist")
    records: list[RunRecord] = []
    problems: list[str] = []
    frontier = [root]
    for _ in range(max_depth):
        deeper = []
        for d in frontier:
            try:
                children = sorted(p for p in d.iterdir() if p.is_dir() and not p.is_symlink())
            except OSError as exc:
                problems.append(f"{d}: {exc}")
                continue
            for child in children:
                rel = child.relative_to(root).as_posix()
                summary_path = child / SUMMARY
                if summary_path.is_symlink():
                    continue
                if summary_path.is_file():
                    try:
                        summary = _read_json(summary_path)
                    except (RegistryError, OSError, UnicodeDecodeError) as exc:
                        problems.append(f"{summary_path} is corrupt ({exc})")
                        continue
                    if not isinstance(summary, dict) or summary.get("arch") not in RUN_ARCHS:
                        arch = summary.get("arch") if isinstance(summary, dict) else None
                        problems.append(f"{summary_path} is corrupt (arch={arch!r})")
                        continue
                    status, reason = summary_status(summary)
                    records.append(RunRecord(rel, child, status, summary["arch"], summary,
                                             _mtime(summary_path), reason))
                elif child.name in _NOT_RUNS:
                    continue
                elif any((child / m).exists() and not (child / m).is_symlink() for m in RUN_MARKERS):
                    arch = None
                    try:
                        config = _read_json(child / CONFIG)
                        arch = config.get("arch") if isinstance(config, dict) else None
                    except (RegistryError, OSError, UnicodeDecodeError):
                        pass
                    records.append(RunRecord(rel, child, "incomplete", arch, None, _mtime(child),
                                             f"no {SUMMARY}: still running, or crashed"))
                else:
                    deeper.append(child)
        frontier = deeper
    records.sort(key=lambda r: (-r.mtime, r.name))
    return records, problems


def dense_partner(run: RunRecord, records: list[RunRecord]) -> RunRecord | None:
    """The dense run trained beside a Leviathan run: its sibling named ``dense`` (the layout of
    ``compare`` and the dashboard), else a dense run on the same data and vocabulary."""
    by_path = {r.path: r for r in records if r.summary is not None}
    sibling = by_path.get(run.path.parent / "dense")
    if sibling is not None and sibling.arch == "dense":
        return sibling
    summary = run.summary or {}
    data = (summary.get("data") or {}).get("content_hash")
    vocab = (summary.get("model_config") or {}).get("vocab_size")
    for r in records:
        s = r.summary or {}
        if (r.arch == "dense" and data and (s.get("data") or {}).get("content_hash") == data
                and (s.get("model_config") or {}).get("vocab_size") == vocab):
            return r
    return None


def fit_table(runs_dir: str | Path, max_depth: int = 2) -> tuple[pd.DataFrame, list[str]]:
    """The finished runs under ``runs_dir`` as a registry table for a fit, each named by its
    path under ``runs_dir`` (two pairs both hold a run called "dense"), and one line per
    run left out: stopped, failed, incomplete, or without a usable validation loss."""
    records, problems = scan_runs(runs_dir, max_depth)
    rows, skipped = [], list(problems)
    for r in sorted(records, key=lambda r: r.name):
        if r.status != "finished":
            skipped.append(f"{r.name} ({r.status}{': ' + r.reason if r.reason else ''})")
            continue
        try:
            rows.append({**summary_row(r.path), "name": r.name})
        except RegistryError as exc:
            skipped.append(f"{r.name} ({exc})")
    return pd.DataFrame(rows, columns=RUN_COLUMNS), skipped


def seed_spread(sweeps_root: str | Path) -> dict[str, Any] | None:
    """The largest validation-loss difference between two seeds of one model, from sweeps.

    Looks at every sweep directory under ``sweeps_root`` (``grid.json`` + ``selected.json``);
    sweeps with the same ``train`` settings and data directory but different seeds measure
    the same models twice. Returns {"nats", "model", "sweeps"} for the largest difference,
    or None when no model was trained under two seeds.
    """
    root = Path(sweeps_root)
    if not root.is_dir():
        return None
    by_setting: dict[str, list[tuple[str, int, dict]]] = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink()):
        try:
            grid, selected = _read_json(d / GRID), _read_json(d / SELECTED)
        except (RegistryError, OSError, UnicodeDecodeError):
            continue
        if not (isinstance(grid, dict) and isinstance(selected, dict) and isinstance(selected.get("models"), dict)):
            continue
        setting = json.dumps([grid.get("train"), selected.get("data_dir")], sort_keys=True)
        by_setting.setdefault(setting, []).append((d.name, grid.get("seed"), selected["models"]))
    best: dict[str, Any] | None = None
    for sweeps in by_setting.values():
        for i, (name_a, seed_a, models_a) in enumerate(sweeps):
            for name_b, seed_b, models_b in sweeps[i + 1:]:
                if seed_a == seed_b:
                    continue
                for model in sorted(set(models_a) & set(models_b)):
                    try:
                        gap = abs(float(models_a[model]["val_loss"]) - float(models_b[model]["val_loss"]))
                    except (KeyError, TypeError, ValueError):
                        continue
                    if math.isfinite(gap) and (best is None or gap > best["nats"]):
                        best = {"nats": gap, "model": model, "sweeps": [name_a, name_b]}
    return best
