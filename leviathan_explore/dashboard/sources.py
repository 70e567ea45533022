"""Which embeddings the anatomy and geometry tabs can show, and loading them (cached).

Options: an untrained generator over the o200k vocabulary, the shipped demo
snapshot, and every Leviathan run in the runs directory (paired with its dense
sibling when there is one). Loaded sources are shared by all sessions of the
server (read-only after loading) in a small cache.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

from ..analysis.geometry import EmbeddingSource, run_source, snapshot_source, untrained_source
from .common import dense_partner, list_runs, safe_run_dir, shipped_results_dir

UNTRAINED = "untrained"
DEMO = "demo"
RUN_PREFIX = "run:"

_CACHE: OrderedDict[tuple, EmbeddingSource] = OrderedDict()
_CACHE_SIZE = 4
_LOCK = threading.Lock()


def demo_snapshot() -> Path:
    return shipped_results_dir() / "demo" / "embeddings.safetensors"


def source_options(runs_dir: str | Path) -> tuple[dict[str, str], list[str]]:
    """(label -> key, problems). Problems are in-page messages: a missing runs directory,
    a corrupt summary; the untrained model (and the demo, when shipped) are always offered."""
    options: dict[str, str] = {}
    problems: list[str] = []
    try:
        runs, problems = list_runs(runs_dir)
    except FileNotFoundError as exc:
        runs = []
        problems.append(f"{exc}; showing the shipped demo and an untrained model")
    for r in runs:
        if r.arch == "leviathan":
            partner = dense_partner(r, runs)
            options[f"run {r.name}" + (f" + {partner.name}" if partner else "")] = RUN_PREFIX + r.name
    if demo_snapshot().is_file():
        options["demo: trained cpu-tiny pair (shipped)"] = DEMO
    options["untrained generator (o200k_base, paper settings)"] = UNTRAINED
    return options, problems


def load_source(key: str, runs_dir: str | Path) -> EmbeddingSource:
    """The source behind an option key; ValueError / FileNotFoundError with a one-line message."""
    if key == UNTRAINED:
        cache_key: tuple = (UNTRAINED,)
        make = untrained_source
    elif key == DEMO:
        path = demo_snapshot()
        cache_key = (DEMO, str(path), _mtime(path))
        make = lambda: snapshot_source(path, name="demo")  # noqa: E731
    elif key.startswith(RUN_PREFIX):
        run_dir = safe_run_dir(runs_dir, key[len(RUN_PREFIX):])
        if not (run_dir / "summary.json").is_file():
            raise FileNotFoundError(f"run {key[len(RUN_PREFIX):]!r} has no summary.json in {runs_dir}")
        runs, _ = list_runs(runs_dir)
        run = next((r for r in runs if r.path == run_dir), None)
        if run is None:
            raise ValueError(f"run {key[len(RUN_PREFIX):]!r} has a corrupt summary.json")
        partner = dense_partner(run, runs)
        cache_key = (RUN_PREFIX, str(run_dir), _mtime(run_dir / "summary.json"),
                     str(partner.path) if partner else None)
        make = lambda: run_source(run_dir, partner.path if partner else None)  # noqa: E731
    else:
        raise ValueError(f"unknown embedding source {key!r}")
    with _LOCK:
        if cache_key in _CACHE:
            _CACHE.move_to_end(cache_key)
            return _CACHE[cache_key]
    source = make()
    with _LOCK:
        _CACHE[cache_key] = source
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return source


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
