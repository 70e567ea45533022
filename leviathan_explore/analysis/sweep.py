"""Scaling sweeps: a grid of dense sizes, their Leviathan matches, and a learning-rate search for each.

Grid format (JSON)::

    {
      "name": "cpu-stdlib",                 # free text, recorded
      "description": "...",                 # optional
      "preset": "cpu-tiny",                 # default preset of every size
      "seed": 0,                            # model init and data order of every run
      "train": {                            # TrainConfig fields shared by every run (seq_len required)
        "tokens": 1048576,                  # token budget per run (or "steps"; not both)
        "batch_size": 16, "seq_len": 128, "warmup_steps": 20, "min_lr_ratio": 0.1,
        "weight_decay": 0.1, "grad_clip": 1.0, "eval_every": 64, "eval_batches": 16,
        "checkpoint_every": 1000, "device": "cpu"
      },
      "lr_grid": [0.001, 0.003, 0.01],      # >= 3 increasing values, a log grid (or one: a fixed lr)
      "lr_extend": 1,                       # optional (default 0): if the best lr is at an edge
                                            #   of the grid, try up to this many further values
                                            #   beyond it, one grid ratio apart
      "sizes": [
        {"name": "d32",                     # size label: run names start with it
         "preset": "cpu-tiny",              # optional, overrides the top-level preset
         "model": {"d_model": 32, "n_layers": 2, "n_heads": 4},   # ModelConfig overrides
         "dense": true,                     # optional (default true): train the dense model
         "dense_tied": false,               # optional (default false): also train the tied dense
                                            #   model ("<size>-dense-tied"; a backbone variant adds it)
         "lr_grid_tied": [...],             # optional: the tied dense model's grid (default: lr_grid)
         "lr_grid": [...],                  # optional, overrides the top-level grid
         "leviathan": [                     # the Leviathan variants matched to this size
           {"match": "isoparam", "by": "depth"},
           {"match": "isoparam", "by": "ffn", "lr_grid": [...]},
           {"match": "isobody"},
           {"match": "backbone"},          # the revision's identical backbone, vs the tied dense
           {"match": "isoparam", "repr": "hashed",            # a neighbour (representations/),
            "model": {"hash_buckets": 700}},                   #   with its own settings
           {"match": "isoparam", "label": "rank1",            # an ablation: run names say "rank1"
            "model": {"leviathan": {"rank": 1}}}]}
      ]
    }

Every run of a sweep uses the same ``train`` settings and ``seed``, so every run sees
the same tokens in the same order under the same schedule shape; only the model and
the learning rate differ. The vocabulary comes from the data directory.

Layout of ``out_dir``: ``grid.json`` (the grid last run), ``runs/<model>-lr<lr>/`` (one
run directory per model and learning rate, TRAINING contract), and ``selected.json``:
for each model the run with the lowest held-out loss (``final_val_loss``), its
learning rate, every candidate and whether the choice sits at an edge of the grid.

Runs whose ``summary.json`` says ``"finished": true`` are skipped, and so are runs
that diverged (their summary has an ``"error"``; a rerun would diverge again): an
interrupted sweep resumes (an unfinished run continues from its checkpoint) and a
sweep can be extended with more sizes, variants or learning rates. Changing the
shared ``train`` settings or ``seed`` of an existing sweep is refused.
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from ..config import PRESETS, TOKEN_REPRS, ConfigError, preset, read_settings_file
from ..files import InvalidJsonError, json_safe, pid_alive, read_json, read_json_or_none, write_json_atomic
from ..params import MATCHES
from ..training.runs import GRID, SELECTED, SUMMARY, SWEEP_RUNS

GRID_KEYS = {"name", "description", "preset", "seed", "train", "lr_grid", "lr_extend", "sizes"}
SIZE_KEYS = {"name", "preset", "model", "dense", "dense_tied", "lr_grid", "lr_grid_tied", "leviathan"}
VARIANT_KEYS = {"match", "by", "lr_grid", "repr", "label", "model"}
REPRESENTATIONS = tuple(r for r in TOKEN_REPRS if r != "table")


def variant_kind(var: dict[str, Any]) -> str:
    """A variant's model name without its size: 'lev-isoparam-depth', 'hashed-isobody', 'rank1-backbone'.

    Leviathan variants keep the "lev" of the committed sweeps' run names; a ``label`` replaces it.
    """
    stem = var.get("label") or ("lev" if var.get("repr", "leviathan") == "leviathan" else var["repr"])
    match = var.get("match")
    return f"{stem}-isoparam-{var.get('by', 'depth')}" if match == "isoparam" else f"{stem}-{match}"


def _merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Model overrides of a variant over its size's, one level deep for the generator settings."""
    out = {**base, **extra}
    if isinstance(base.get("leviathan"), dict) and isinstance(extra.get("leviathan"), dict):
        out["leviathan"] = {**base["leviathan"], **extra["leviathan"]}
    return out
# TrainConfig fields a sweep sets per run; the grid's "train" section may not.
PER_RUN_FIELDS = {"arch", "preset", "match", "match_by", "model", "lr", "data_dir", "out_dir", "resume",
                  "tie_embeddings"}


class SweepStopped(RuntimeError):
    """A run stopped before its last step (interrupted): the sweep stops too and resumes on rerun."""


@dataclass(frozen=True)
class SweepModel:
    """One model of a sweep: a dense size or one of its Leviathan matches."""

    key: str                    # e.g. "d64-dense", "d64-lev-isoparam-depth"
    size: str
    arch: str
    preset: str
    model: dict[str, Any]
    match: str | None
    match_by: str
    lr_grid: tuple[float, ...]
    tied: bool = False          # dense: the table tied to the head; Leviathan: matched to the tied dense


@dataclass
class SweepGrid:
    name: str
    train: dict[str, Any]       # TrainConfig fields shared by every run (steps resolved)
    models: list[SweepModel]
    lr_extend: int = 0
    raw: dict[str, Any] = field(default_factory=dict)


def lr_text(lr: float) -> str:
    """The learning rate as it appears in a run name: 0.003 -> '0.003', 1e-05 -> '1e-05'."""
    return f"{lr:.3g}"


def run_name(model: SweepModel, lr: float) -> str:
    return f"{model.key}-lr{lr_text(lr)}"


def _check_lr_grid(where: str, grid: Any) -> tuple[float, ...]:
    if not isinstance(grid, list) or len(grid) == 0 or len(grid) == 2:
        raise ConfigError(where, grid, "must be a list of at least 3 learning rates on a log grid, or of one "
                                       "(a learning rate fixed by a stated rule, not searched)")
    for v in grid:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 < v < 1) or not math.isfinite(v):
            raise ConfigError(where, v, "each learning rate must be a number in (0, 1)")
    if any(b <= a for a, b in zip(grid, grid[1:])):
        raise ConfigError(where, grid, "must be strictly increasing")
    return tuple(float(v) for v in grid)


def _check_keys(where: str, obj: Any, allowed: set[str]) -> None:
    if not isinstance(obj, dict):
        raise ConfigError(where, obj, "must be a JSON object")
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}", obj[unknown[0]], f"is not a grid setting; allowed: {sorted(allowed)}")


def parse_grid(raw: dict[str, Any]) -> SweepGrid:
    """Validate a grid (see the module docstring); every error names the offending key."""
    from ..training.config import TrainConfig

    _check_keys("grid", raw, GRID_KEYS)
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError("grid.name", name, "must be a non-empty string")
    default_preset = raw.get("preset", "cpu-tiny")
    if default_preset not in PRESETS:
        raise ConfigError("grid.preset", default_preset, f"must be one of {sorted(PRESETS)}")
    if not isinstance(raw.get("train"), dict):
        raise ConfigError("grid.train", raw.get("train"), "must be an object of TrainConfig fields")
    train = dict(raw["train"])
    if "seq_len" not in train:
        raise ConfigError("grid.train.seq_len", None, "must be set: every run of a sweep uses one sequence length")
    clash = sorted(set(train) & PER_RUN_FIELDS)
    if clash:
        raise ConfigError(f"grid.train.{clash[0]}", train[clash[0]], "is set per run by the sweep; remove it")
    if "seed" in raw:
        if "seed" in train and train["seed"] != raw["seed"]:
            raise ConfigError("grid.train.seed", train["seed"], f"differs from grid.seed={raw['seed']}; set one")
        train["seed"] = raw["seed"]
    tokens = train.pop("tokens", None)
    base = TrainConfig.from_dict({**train, "preset": default_preset})
    if tokens is not None:
        if "steps" in train:
            raise ConfigError("grid.train.tokens", tokens, "set either tokens or steps, not both")
        if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < base.tokens_per_step:
            raise ConfigError("grid.train.tokens", tokens,
                              f"must be an integer >= one step's {base.tokens_per_step} tokens")
        train["steps"] = -(-tokens // base.tokens_per_step)  # ceil: every run sees at least the budget
    lr_grid = _check_lr_grid("grid.lr_grid", raw.get("lr_grid"))
    lr_extend = raw.get("lr_extend", 0)
    if isinstance(lr_extend, bool) or not isinstance(lr_extend, int) or not 0 <= lr_extend <= 5:
        raise ConfigError("grid.lr_extend", lr_extend, "must be an integer in [0, 5]")
    sizes = raw.get("sizes")
    if not isinstance(sizes, list) or not sizes:
        raise ConfigError("grid.sizes", sizes, "must be a non-empty list of sizes")
    models: list[SweepModel] = []
    for i, size in enumerate(sizes):
        where = f"grid.sizes[{i}]"
        _check_keys(where, size, SIZE_KEYS)
        sname = size.get("name")
        if not isinstance(sname, str) or not sname or "/" in sname:
            raise ConfigError(f"{where}.name", sname, "must be a non-empty name without '/'")
        spreset = size.get("preset", default_preset)
        if spreset not in PRESETS:
            raise ConfigError(f"{where}.preset", spreset, f"must be one of {sorted(PRESETS)}")
        model = size.get("model", {})
        if not isinstance(model, dict):
            raise ConfigError(f"{where}.model", model, "must be an object of ModelConfig overrides")
        size_grid = _check_lr_grid(f"{where}.lr_grid", size["lr_grid"]) if "lr_grid" in size else lr_grid
        if size.get("dense", True):
            models.append(SweepModel(f"{sname}-dense", sname, "dense", spreset, model, None, "depth", size_grid))
        variants = size.get("leviathan", [])
        if not isinstance(variants, list):
            raise ConfigError(f"{where}.leviathan", variants, "must be a list of {match, by} objects")
        dense_tied = size.get("dense_tied", False)
        if not isinstance(dense_tied, bool):
            raise ConfigError(f"{where}.dense_tied", dense_tied, "must be true or false")
        if dense_tied or any(isinstance(v, dict) and v.get("match") == "backbone" for v in variants):
            tied_grid = _check_lr_grid(f"{where}.lr_grid_tied", size["lr_grid_tied"]) if "lr_grid_tied" in size \
                else size_grid
            models.append(SweepModel(f"{sname}-dense-tied", sname, "dense", spreset, model, None, "depth",
                                     tied_grid, tied=True))
        for j, var in enumerate(variants):
            vwhere = f"{where}.leviathan[{j}]"
            _check_keys(vwhere, var, VARIANT_KEYS)
            match = var.get("match")
            if match not in MATCHES:
                raise ConfigError(f"{vwhere}.match", match, f"must be one of {list(MATCHES)}")
            by = var.get("by", "depth")
            if by not in ("depth", "width", "ffn"):
                raise ConfigError(f"{vwhere}.by", by, "must be 'depth', 'width' or 'ffn'")
            rep = var.get("repr", "leviathan")
            if rep not in REPRESENTATIONS:
                raise ConfigError(f"{vwhere}.repr", rep, f"must be one of {list(REPRESENTATIONS)}")
            label = var.get("label")
            if label is not None and (not isinstance(label, str) or not label.isidentifier()):
                raise ConfigError(f"{vwhere}.label", label, "must be a short name of letters, digits and _")
            var_model = var.get("model", {})
            if not isinstance(var_model, dict):
                raise ConfigError(f"{vwhere}.model", var_model, "must be an object of ModelConfig overrides")
            key = f"{sname}-{variant_kind(var)}"
            vgrid = _check_lr_grid(f"{vwhere}.lr_grid", var["lr_grid"]) if "lr_grid" in var else size_grid
            models.append(SweepModel(key, sname, rep, spreset, _merged(model, var_model), match, by, vgrid,
                                     tied=match == "backbone"))
    keys = [m.key for m in models]
    dup = next((k for k in keys if keys.count(k) > 1), None)
    if dup:
        raise ConfigError("grid.sizes", dup, "names a model twice; size names and variants must be unique")
    for m in models:  # fail now, not an hour in, on a bad model override
        run_config(SweepGrid(name, train, [], lr_extend), m, m.lr_grid[0], "", "")
        try:
            preset(m.preset, **m.model)
        except TypeError as exc:
            raise ConfigError(f"grid.sizes[{m.size}].model", m.model, f"has an unknown setting ({exc})") from None
    return SweepGrid(name, train, models, lr_extend, raw)


def load_grid(path: str | Path) -> SweepGrid:
    return parse_grid(read_settings_file(path, "grid", "no such grid file"))


def run_config(grid: SweepGrid, model: SweepModel, lr: float, data_dir: str, out_dir: str, *,
               resume: bool = False, progress: bool = True):
    """The ``TrainConfig`` of one run of the sweep."""
    from ..training.config import TrainConfig

    return TrainConfig.from_dict({**grid.train, "arch": model.arch, "preset": model.preset, "match": model.match,
                                  "match_by": model.match_by, "model": dict(model.model), "lr": lr,
                                  "tie_embeddings": model.tied,
                                  "data_dir": str(data_dir), "out_dir": str(out_dir), "resume": resume,
                                  "progress": progress and grid.train.get("progress", True)})


# ---- running ----------------------------------------------------------------------------------

def _read_summary(run_dir: Path) -> dict[str, Any] | None:
    """A run's summary; a torn or corrupt one is treated as absent (the run is redone from its checkpoint)."""
    return read_json_or_none(run_dir / SUMMARY)


def _outcome(summary: dict[str, Any] | None) -> str | None:
    """'finished', 'diverged' or None (not done: run or resume it)."""
    if summary is None:
        return None
    if summary.get("finished") is True:
        return "finished"
    if summary.get("error"):
        return "diverged"
    return None


def _loss_of(summary: dict[str, Any], outcome: str) -> float:
    loss = summary.get("final_val_loss")
    if outcome != "finished" or loss is None or not math.isfinite(float(loss)):
        return float("inf")
    return float(loss)


def _first_difference(saved: Any, wanted: Any, prefix: str) -> tuple[str, Any, Any] | None:
    if isinstance(saved, dict) and isinstance(wanted, dict):
        for key in sorted(set(saved) | set(wanted)):
            diff = _first_difference(saved.get(key), wanted.get(key), f"{prefix}.{key}")
            if diff:
                return diff
        return None
    return None if saved == wanted else (prefix, saved, wanted)


def _check_same_model(name: str, summary: dict[str, Any], cfg, vocab_size: int) -> None:
    """A finished run is reused only if the grid still builds the model it trained.

    Run names carry the size and the learning rate, not every setting: a changed
    model override, or a changed default in the code, would otherwise mix two
    different models under one name.
    """
    from ..training.trainer import build_model_config

    saved = summary.get("model_config")
    if not isinstance(saved, dict):
        return
    from ..config import ModelConfig

    saved = ModelConfig.with_defaults(saved)  # a setting added to the code later was, for this run, its default
    wanted = build_model_config(cfg, vocab_size).to_dict()
    if saved.get("token_repr") == "table":  # a dense model has no generator: its settings do not matter
        saved, wanted = ({k: v for k, v in d.items() if k != "leviathan"} for d in (saved, wanted))
    diff = _first_difference(saved, wanted, "model_config")
    if diff:
        where, was, now = diff
        raise ConfigError(f"runs/{name} {where}", was,
                          f"the grid now builds {now!r} (a changed override or code default); pin the "
                          f"setting in the size's \"model\" overrides or use a new --out")


def _check_same_schedule(out: Path, grid: SweepGrid) -> None:
    """Refuse to mix runs trained under different shared settings in one sweep directory."""
    path = out / GRID
    if not path.is_file():
        return
    try:
        old = parse_grid(read_json(path))
    except ValueError:  # not JSON (InvalidJsonError) or not a grid (ConfigError)
        raise ConfigError("--out", str(out), f"holds a {GRID} that cannot be read; use a new --out") from None
    for key in sorted(set(old.train) | set(grid.train)):
        if key in ("progress", "log_every", "eval_batches", "checkpoint_every", "keep_checkpoints"):
            continue  # do not change what a run learns (eval_batches changes what is measured: kept below)
        if old.train.get(key) != grid.train.get(key):
            raise ConfigError(f"grid.train.{key}", grid.train.get(key),
                              f"differs from this sweep's {old.train.get(key)!r} in {path}; "
                              f"every run of a sweep shares one schedule: use a new --out")
    if old.train.get("eval_batches") != grid.train.get("eval_batches"):
        raise ConfigError("grid.train.eval_batches", grid.train.get("eval_batches"),
                          f"differs from this sweep's {old.train.get('eval_batches')!r}: losses would not compare")


def _write_json(path: Path, obj: Any) -> None:
    write_json_atomic(path, json_safe(obj))


CLAIMS = ".claims"  # under out_dir: one file per model a worker is training, holding its pid


def _claim_pid(path: Path) -> int:
    """The pid a claim file holds (0 when it is gone, being written, or unreadable)."""
    try:
        return int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def live_claims(out: Path) -> list[str]:
    """Keys of the models of sweep ``out`` that a live process other than this one is training."""
    return [p.name for p in sorted((Path(out) / CLAIMS).glob("*"))
            if (pid := _claim_pid(p)) and pid != os.getpid() and pid_alive(pid)]


def wait_for_workers(argvs: list[list[str]], env: dict[str, str] | None = None) -> list[int]:
    """Start one process per argv and return their exit codes once all have ended; on Ctrl-C,
    wait for every worker to stop (each saves its run) before raising ``KeyboardInterrupt``."""
    import subprocess

    procs = [subprocess.Popen(argv, env=env) for argv in argvs]
    try:
        return [p.wait() for p in procs]
    except KeyboardInterrupt:
        for p in procs:
            p.wait()
        raise


def claim_model(out: Path, key: str) -> bool:
    """Claim ``key`` for this process (an exclusively created file with our pid); True if we hold it.

    A claim left by a process that has died is taken over, so a killed sweep resumes.
    """
    root = out / CLAIMS
    root.mkdir(parents=True, exist_ok=True)
    path = root / key
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            pid = _claim_pid(path)
            if pid == os.getpid():
                return True
            if pid and pid_alive(pid):
                return False
            try:
                path.unlink()  # stale: its worker is gone
            except FileNotFoundError:
                pass
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(str(os.getpid()))
        return True
    return False


def release_model(out: Path, key: str) -> None:
    path = out / CLAIMS / key
    if _claim_pid(path) == os.getpid():
        try:
            path.unlink()
        except OSError:
            pass


@contextmanager
def _locked(path: Path):
    """An exclusive lock on ``path`` (fcntl; a no-op where fcntl is missing) for read-modify-write."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _merge_selected(path: Path, base: dict[str, Any], key: str, entry: dict[str, Any] | None,
                    failed: bool) -> dict[str, Any]:
    """Write one model's choice into ``selected.json`` without losing another worker's."""
    with _locked(path.with_name(".selected.lock")):
        current = read_json_or_none(path)
        merged = dict(base) if not isinstance(current, dict) else {**base, **{k: v for k, v in current.items()
                                                                          if k in ("models", "failed")}}
        models = dict(merged.get("models") or {})
        fails = dict(merged.get("failed") or {})
        if entry is not None:
            if failed:
                models.pop(key, None)
                fails[key] = entry
            else:
                fails.pop(key, None)
                models[key] = entry
        merged["models"] = models
        if fails:
            merged["failed"] = fails
        else:
            merged.pop("failed", None)
        _write_json(path, merged)
        return merged


def run_sweep(grid: SweepGrid | dict | str | Path, data_dir: str | Path, out_dir: str | Path, *,
              train_fn: Callable[[Any], dict] | None = None, progress: bool = True,
              claim: bool = False) -> dict[str, Any]:
    """Run (or resume, or extend) a sweep; returns the content of ``out_dir/selected.json``.

    ``train_fn(cfg) -> summary`` defaults to ``training.train`` on data loaded once;
    tests pass a fake. A run that diverges (``TrainingDiverged``) counts as loss +inf
    for the learning-rate choice. ``claim=True``: several processes share the sweep;
    each model (with its learning-rate search) is trained by whichever process claims
    it first (``claim_model``), and ``selected.json`` is merged under a lock.
    """
    from tqdm.auto import tqdm

    from ..training.trainer import TrainingDiverged

    if isinstance(grid, (str, Path)):
        grid = load_grid(grid)
    elif isinstance(grid, dict):
        grid = parse_grid(grid)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError("--out", str(out), "is a file; it must be a (new or existing) sweep directory")
    _check_same_schedule(out, grid)
    vocab_size = None
    if train_fn is None:
        from ..training.trainer import open_data, train

        data = open_data(data_dir)
        vocab_size = int(data.vocab_size)

        def train_fn(cfg):
            return train(cfg, data=data)

    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / GRID, grid.raw)
    selected_path = out / SELECTED
    selected: dict[str, Any] = {"grid": grid.name, "data_dir": str(data_dir), "metric": "final_val_loss",
                                "models": {}}
    # Until a model is revisited below, keep its previous choice (selected.json stays complete mid-sweep).
    keys = {m.key for m in grid.models}
    previous = read_json_or_none(selected_path)
    if isinstance(previous, dict) and isinstance(previous.get("models"), dict):
        selected["models"] = {k: v for k, v in previous["models"].items() if k in keys}
    with _locked(out / ".selected.lock"):  # models no longer in the grid leave selected.json
        _write_json(selected_path, {**selected, **({"failed": {k: v for k, v in previous["failed"].items()
                                                               if k in keys}}
                                                   if isinstance(previous, dict) and previous.get("failed")
                                                   else {})})
    base = {k: v for k, v in selected.items() if k not in ("models", "failed")}

    n_planned = sum(len(m.lr_grid) for m in grid.models)
    bar = tqdm(total=n_planned, desc=f"sweep {grid.name}", unit="run", disable=not progress)
    try:
        for model in grid.models:
            if claim and not claim_model(out, model.key):
                bar.update(len(model.lr_grid))  # another worker trains it
                continue
            results: dict[float, dict[str, Any]] = {}

            def run_one(lr: float) -> None:
                name = run_name(model, lr)
                run_dir = out / SWEEP_RUNS / name
                summary = _read_summary(run_dir)
                outcome = _outcome(summary)
                if outcome is not None and vocab_size is not None:
                    _check_same_model(name, summary, run_config(grid, model, lr, str(data_dir), str(run_dir)),
                                      vocab_size)
                if outcome is None:
                    bar.set_postfix_str(name)
                    cfg = run_config(grid, model, lr, str(data_dir), str(run_dir),
                                     resume=run_dir.exists(), progress=progress)
                    try:
                        train_fn(cfg)
                    except TrainingDiverged:
                        pass  # the trainer wrote a summary with the error
                    summary = _read_summary(run_dir)
                    outcome = _outcome(summary)
                    if outcome is None:
                        release_model(out, model.key)
                        raise SweepStopped(f"run {name} stopped before its last step; rerun the same "
                                           f"command to resume the sweep")
                loss = _loss_of(summary or {}, outcome)
                results[lr] = {"lr": lr, "run": name, "val_loss": loss if math.isfinite(loss) else None,
                               "status": outcome}
                bar.update(1)

            for lr in model.lr_grid:
                run_one(lr)
            # Extend past an edge while the best learning rate sits on it (a fixed lr is not searched).
            searched = len(model.lr_grid) >= 3
            ratio = (model.lr_grid[-1] / model.lr_grid[0]) ** (1 / (len(model.lr_grid) - 1)) if searched else 1.0
            for _ in range(grid.lr_extend if searched else 0):
                lrs = sorted(results)
                best = min(lrs, key=lambda v: (results[v]["val_loss"] is None, results[v]["val_loss"] or 0.0))
                if results[best]["val_loss"] is None:
                    break
                if best == lrs[0]:
                    nxt = float(lr_text(lrs[0] / ratio))
                elif best == lrs[-1] and lrs[-1] * ratio < 1:
                    nxt = float(lr_text(lrs[-1] * ratio))
                else:
                    break
                bar.total += 1
                run_one(nxt)

            lrs = sorted(results)
            finite = [v for v in lrs if results[v]["val_loss"] is not None]
            entry: dict[str, Any] = {"size": model.size, "arch": model.arch, "match": model.match,
                                     "match_by": model.match_by if model.arch != "dense" else None,
                                     "candidates": [results[v] for v in lrs]}
            if finite:
                best = min(finite, key=lambda v: results[v]["val_loss"])
                entry.update(run=results[best]["run"], lr=best, val_loss=results[best]["val_loss"],
                             lr_searched=len(lrs) >= 3, lr_at_edge=len(lrs) >= 3 and best in (lrs[0], lrs[-1]))
            # progress is visible (and fit-able) as the sweep goes
            selected = _merge_selected(selected_path, base, model.key, entry, failed=not finite)
            if claim:
                release_model(out, model.key)
    finally:
        bar.close()
    return read_json_or_none(selected_path) or selected


# ---- reading a finished sweep -----------------------------------------------------------------

def lr_search_table(sweep_dir: str | Path) -> pd.DataFrame:
    """The learning-rate search of a sweep as a table: one row per (model, learning rate).

    Reads the sweep's ``selected.json`` (written by ``run_sweep``). Columns
    model, arch, lr, val_loss (NaN for a run that did not finish), status and selected
    (the learning rate the sweep chose for that model).
    """
    path = Path(sweep_dir) / SELECTED
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: {sweep_dir} is not a finished sweep directory")
    try:
        models = read_json(path)["models"]
    except (InvalidJsonError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a sweep selection ({type(exc).__name__}: {exc})") from None
    rows = []
    for model, entry in models.items():
        for cand in entry.get("candidates", []):
            loss = cand.get("val_loss")
            rows.append(dict(model=model, arch=entry.get("arch"), lr=float(cand["lr"]),
                             val_loss=math.nan if loss is None else float(loss), status=cand.get("status"),
                             selected=cand.get("run") == entry.get("run")))
    return pd.DataFrame(rows, columns=["model", "arch", "lr", "val_loss", "status", "selected"])
