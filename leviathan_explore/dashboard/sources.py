"""Which embeddings the anatomy and geometry tabs can show, and loading them (cached).

Options: every Leviathan run in the runs directory (paired with its dense sibling
when there is one), newest first and labelled with its steps and validation loss,
the shipped demo snapshot, and an untrained generator over the whole o200k
vocabulary. Runs are found by ``analysis.registry.scan_runs``. Loaded sources are
shared by all sessions of the server (read-only after loading) through ``pn.cache``,
keyed by the files' modification times so that a retrained run is loaded afresh.
"""

from __future__ import annotations

from pathlib import Path

import panel as pn

from ..analysis.embedding_sources import EmbeddingSource, run_source, snapshot_source, untrained_source
from ..analysis.registry import RunRecord, dense_partner, scan_runs
from ..training.runs import SUMMARY
from .common import safe_run_dir, shipped_results_dir

UNTRAINED = "untrained"
DEMO = "demo"
RUN_PREFIX = "run:"
UNTRAINED_LABEL = "untrained generator (o200k_base, 200,019 ids: covers any text)"
DEMO_LABEL = "demo: trained cpu-tiny pair (shipped; 4,096-id code vocabulary)"
CACHED_SOURCES = 4  # an o200k source holds ~100 MB of generator weights


def demo_snapshot() -> Path:
    return shipped_results_dir() / "demo" / "embeddings.safetensors"


def leviathan_runs(records: list[RunRecord]) -> list[RunRecord]:
    """The Leviathan runs whose weights can be read: finished or stopped (newest first)."""
    return [r for r in records if r.arch == "leviathan" and r.status in ("finished", "stopped")]


def source_options(runs_dir: str | Path, records: list[RunRecord] | None = None,
                   problems: list[str] | None = None) -> tuple[dict[str, str], list[str]]:
    """(label -> key, problems). Problems are in-page messages: a missing runs directory,
    a corrupt summary; the untrained model (and the demo, when shipped) are always offered."""
    options: dict[str, str] = {}
    problems = list(problems or [])
    if records is None:
        try:
            records, found_problems = scan_runs(runs_dir)
            problems += found_problems
        except FileNotFoundError as exc:
            records = []
            problems.append(f"{exc}; showing the shipped demo and an untrained model")
    for r in leviathan_runs(records):
        partner = dense_partner(r, records)
        options[f"run {r.label}" + (f" + {partner.name}" if partner else "")] = RUN_PREFIX + r.name
    if demo_snapshot().is_file():
        options[DEMO_LABEL] = DEMO
    options[UNTRAINED_LABEL] = UNTRAINED
    return options, problems


def default_source(options: dict[str, str]) -> str:
    """The newest finished run (the options list runs newest first), else the demo, else untrained."""
    finished = [k for label, k in options.items() if k.startswith(RUN_PREFIX) and "(finished" in label]
    if finished:
        return finished[0]
    return DEMO if DEMO in options.values() else UNTRAINED


@pn.cache(max_items=CACHED_SOURCES)
def _load(kind: str, path: str, stamp: float, partner: str | None) -> EmbeddingSource:
    """The source itself; ``stamp`` (a modification time) is part of the cache key only."""
    if kind == UNTRAINED:
        return untrained_source()
    if kind == DEMO:
        return snapshot_source(path, name="demo")
    return run_source(path, partner)


def load_source(key: str, runs_dir: str | Path) -> EmbeddingSource:
    """The source behind an option key; ValueError / FileNotFoundError with a one-line message."""
    if key == UNTRAINED:
        return _load(UNTRAINED, "", 0.0, None)
    if key == DEMO:
        path = demo_snapshot()
        return _load(DEMO, str(path), _mtime(path), None)
    if key.startswith(RUN_PREFIX):
        name = key[len(RUN_PREFIX):]
        run_dir = safe_run_dir(runs_dir, name)
        if not (run_dir / SUMMARY).is_file():
            raise FileNotFoundError(f"run {name!r} has no {SUMMARY} in {runs_dir}")
        records, _ = scan_runs(runs_dir)
        run = next((r for r in records if r.path.resolve() == run_dir), None)
        if run is None or run.summary is None:
            raise ValueError(f"run {name!r} has a corrupt {SUMMARY}")
        if run.arch != "leviathan":
            raise ValueError(f"run {name!r} is a {run.arch} run: pick a Leviathan run")
        partner = dense_partner(run, records)
        return _load(RUN_PREFIX, str(run_dir), _mtime(run_dir / SUMMARY),
                     str(partner.path) if partner else None)
    raise ValueError(f"unknown embedding source {key!r}")


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
