"""What every tab shares: the runs directory, safe run paths, in-page messages.

A run name typed into the page goes through ``safe_run_dir``: it may not be
absolute, contain ``..`` or odd characters, or pass through a symbolic link, so
it always names a directory inside the runs directory. Nothing is unpickled:
runs are read as JSON and safetensors only.
"""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable

import panel as pn

RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
DEFAULT_RUNS_DIR = "runs"


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def shipped_results_dir() -> Path:
    """``results/`` of the checkout: the shipped demo run and committed sweeps."""
    return repo_root() / "results"


def safe_run_dir(runs_dir: str | os.PathLike, name: str) -> Path:
    """``runs_dir/name`` for a user-typed ``name`` of one or more ``/``-separated parts.

    Raises ValueError naming the problem for: empty or whitespace-only names, absolute
    paths, ``..`` or parts outside ``[A-Za-z0-9._-]`` (starting with a letter or digit),
    and any existing part that is a symbolic link or resolves outside ``runs_dir``.
    """
    if not isinstance(name, str) or name.strip() == "":
        raise ValueError("the run name is empty: use letters, digits, '.', '_' or '-'")
    name = name.strip()
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or os.path.isabs(name):
        raise ValueError(f"run name {name!r} is an absolute path: give a name inside the runs directory")
    parts = name.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise ValueError(f"run name {name!r} may not contain empty, '.' or '..' parts")
        if not RUN_NAME.match(part):
            raise ValueError(f"run name {name!r}: part {part!r} must start with a letter or digit and use "
                             f"only letters, digits, '.', '_' or '-' (at most 100 characters)")
    root = Path(runs_dir).resolve()
    path = root
    for part in parts:
        path = path / part
        if path.is_symlink():
            raise ValueError(f"run name {name!r} passes through a symbolic link ({part}); refused")
    if not path.resolve().is_relative_to(root):
        raise ValueError(f"run name {name!r} resolves outside the runs directory")
    return path


def read_json_object(path: Path) -> dict:
    """A JSON object from ``path``; ValueError naming the file when it is corrupt."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is corrupt (not valid JSON: {exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} is corrupt (expected a JSON object)")
    return data


@dataclass(frozen=True)
class RunInfo:
    """A run found under the runs directory."""

    name: str       # path relative to the runs directory, e.g. "compare-cpu-tiny-300/leviathan"
    path: Path
    arch: str
    summary: dict


def list_runs(runs_dir: str | os.PathLike, max_depth: int = 2) -> tuple[list[RunInfo], list[str]]:
    """Runs (directories with a readable ``summary.json``) up to ``max_depth`` levels down.

    Returns (runs sorted by name, problems): a corrupt summary is reported in
    ``problems`` instead of aborting the listing. Symbolic links are not followed.
    Raises FileNotFoundError when ``runs_dir`` does not exist.
    """
    root = Path(runs_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"runs directory {str(root)!r} does not exist")
    runs, problems = [], []
    frontier = [root]
    for _ in range(max_depth):
        nxt = []
        for d in frontier:
            try:
                children = sorted(p for p in d.iterdir() if p.is_dir() and not p.is_symlink())
            except OSError as exc:
                problems.append(f"{d}: {exc}")
                continue
            for child in children:
                summary_path = child / "summary.json"
                if summary_path.is_file() and not summary_path.is_symlink():
                    try:
                        summary = read_json_object(summary_path)
                        arch = summary.get("arch")
                        if arch not in ("dense", "leviathan"):
                            raise ValueError(f"{summary_path} is corrupt (arch={arch!r})")
                    except (ValueError, OSError) as exc:
                        problems.append(str(exc))
                        continue
                    runs.append(RunInfo(child.relative_to(root).as_posix(), child, arch, summary))
                elif child.name != "checkpoints":
                    nxt.append(child)
        frontier = nxt
    return sorted(runs, key=lambda r: r.name), problems


def dense_partner(run: RunInfo, runs: list[RunInfo]) -> RunInfo | None:
    """The dense run trained beside a Leviathan run: its sibling named ``dense`` (the layout of
    ``compare`` and the Train tab), else a dense run on the same data and vocabulary."""
    by_path = {r.path: r for r in runs}
    sibling = by_path.get(run.path.parent / "dense")
    if sibling is not None and sibling.arch == "dense":
        return sibling
    data = (run.summary.get("data") or {}).get("content_hash")
    vocab = (run.summary.get("model_config") or {}).get("vocab_size")
    for r in runs:
        if (r.arch == "dense" and data and (r.summary.get("data") or {}).get("content_hash") == data
                and (r.summary.get("model_config") or {}).get("vocab_size") == vocab):
            return r
    return None


def message(text: str = "", kind: str = "danger") -> pn.pane.Alert:
    """An in-page message box, hidden while its text is empty."""
    return pn.pane.Alert(text, alert_type=kind, visible=bool(text), sizing_mode="stretch_width")


def show(alert: pn.pane.Alert, text: str, kind: str = "danger") -> None:
    alert.object = text
    alert.alert_type = kind
    alert.visible = bool(text)


def set_figure(pane: pn.pane.Plotly, figure) -> None:
    """Show ``figure`` in ``pane``; hide the pane for ``None`` (an empty plotly pane draws blank axes)."""
    pane.object = figure
    pane.visible = figure is not None


def run_in_background(work: Callable[[], Any], done: Callable[[Any], None]) -> threading.Thread | None:
    """Run ``work()`` off the server's event loop; hand its result (or exception) to ``done``.

    In a browser session ``work`` runs in a daemon thread and ``done`` on the session's
    next tick (so it may touch the page), keeping the page and other sessions live
    during seconds of computation. Without a session (tests, notebooks) both run inline.
    """
    doc = pn.state.curdoc
    if doc is None or doc.session_context is None:
        try:
            result = work()
        except Exception as exc:  # handed to done, which shows it in the page
            result = exc
        done(result)
        return None

    def target():
        try:
            result = work()
        except Exception as exc:
            result = exc
        doc.add_next_tick_callback(partial(done, result))

    thread = threading.Thread(target=target, name="dashboard-work", daemon=True)
    thread.start()
    return thread


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message (the user-facing part)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
