"""Files that must survive a kill: one atomic writer, one strict and one tolerant JSON reader.

A writer that dies mid-way (SIGKILL, a full disk) must leave either the old file or
the new one under the real name, never half of one; a reader racing a writer, or
reading after a kill, may see a torn file and must not crash on it. Every module
that writes JSON (run directories, checkpoints, sweeps, token shards, benchmark
results) goes through ``write_json_atomic``; ``pid_alive`` tells a stale temporary
(or claim) of a killed process from one that is still being written.

This module knows no file names: ``training.runs`` owns run directories,
``data.shards`` token data. It imports nothing from the package, so the data layer
and the training layer can both depend on it.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np


class InvalidJsonError(ValueError):
    """A file exists but is not JSON (torn by a kill, or not JSON at all); the message names it."""

    def __init__(self, path: str | Path, reason: str):
        self.path, self.reason = Path(path), reason
        super().__init__(f"{path}: not valid JSON ({reason})")


def json_safe(obj: Any) -> Any:
    """``obj`` with NaN and infinite floats replaced by None (strict JSON has no NaN) and
    numpy scalars turned into Python numbers."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        return json_safe(obj.item())
    return obj


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to a temporary file next to ``path`` (``.NAME.XXXX.tmp``), fsync it, then
    ``os.replace`` it: a reader sees the old content or the new, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json_atomic(path: str | Path, obj: Any, *, indent: int | None = 2,
                      default: Callable[[Any], Any] | None = None) -> None:
    """``obj`` as strict JSON (no NaN: pass it through ``json_safe`` first) plus a newline, written
    atomically. ``indent=None`` writes one line (large id lists); ``default`` converts objects
    JSON does not know (as ``json.dump``'s)."""
    write_text_atomic(path, json.dumps(obj, indent=indent, allow_nan=False, default=default) + "\n")


def read_json(path: str | Path) -> Any:
    """The parsed content of ``path``.

    ``FileNotFoundError`` when it is missing; ``InvalidJsonError`` (a ``ValueError``) naming the
    file and where it breaks when it is torn, not UTF-8, or not JSON.
    """
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise InvalidJsonError(path, f"{exc.msg} at line {exc.lineno}") from None
    except UnicodeDecodeError as exc:
        raise InvalidJsonError(path, f"not UTF-8 text at byte {exc.start}") from None


def read_json_or_none(path: str | Path) -> Any | None:
    """The parsed content of ``path``, or None when it is missing, unreadable, torn or not JSON.

    For files that may be absent or mid-write by design (a run's summary while it trains,
    a sweep's ``selected.json`` another worker is replacing): absent and corrupt mean the
    same to such a reader, "not there yet".
    """
    try:
        return read_json(path)
    except (OSError, InvalidJsonError):
        return None


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` is running (one we may not signal counts too; a zombie, which has
    exited and waits only for its parent to read its status, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # Linux: the state letter follows the parenthesised command name
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


__all__ = ["InvalidJsonError", "json_safe", "write_text_atomic", "write_json_atomic", "read_json",
           "read_json_or_none", "pid_alive"]
