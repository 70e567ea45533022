"""The one atomic JSON writer and the two readers (``leviathan_explore.files``)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from leviathan_explore.files import (InvalidJsonError, json_safe, pid_alive, read_json, read_json_or_none,
                                     write_json_atomic)


def test_json_safe_nulls_non_finite_floats_and_unwraps_numpy_scalars():
    cleaned = json_safe({"a": float("nan"), "b": [1.5, float("inf"), (np.float32(2.5), np.int64(3))],
                         "c": np.bool_(True), "d": "text"})
    assert cleaned == {"a": None, "b": [1.5, None, [2.5, 3]], "c": True, "d": "text"}
    assert type(cleaned["b"][2][1]) is int and type(cleaned["c"]) is bool
    json.dumps(cleaned, allow_nan=False)  # strict JSON now


def test_write_json_atomic_replaces_the_file_whole_and_refuses_nan(tmp_path):
    path = tmp_path / "deep" / "out.json"
    write_json_atomic(path, {"x": [1, 2]})
    assert path.read_text() == '{\n  "x": [\n    1,\n    2\n  ]\n}\n'
    write_json_atomic(path, {"x": 1}, indent=None)
    assert path.read_text() == '{"x": 1}\n'
    with pytest.raises(ValueError):
        write_json_atomic(path, {"x": float("nan")})
    assert path.read_text() == '{"x": 1}\n' and sorted(p.name for p in path.parent.iterdir()) == ["out.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "summary.json"
    write_json_atomic(path, {"old": True})

    def full_disk(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError):
        write_json_atomic(path, {"new": True})
    assert json.loads(path.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_read_json_names_the_torn_file_and_the_tolerant_reader_returns_none(tmp_path):
    torn = tmp_path / "torn.json"
    torn.write_text('{"steps": 3, "los')
    with pytest.raises(InvalidJsonError, match=r"torn\.json: not valid JSON \(.* at line 1\)"):
        read_json(torn)
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe{}")
    with pytest.raises(InvalidJsonError, match="not UTF-8"):
        read_json(binary)
    with pytest.raises(FileNotFoundError):
        read_json(tmp_path / "missing.json")
    assert read_json_or_none(torn) is None and read_json_or_none(binary) is None
    assert read_json_or_none(tmp_path / "missing.json") is None
    assert read_json_or_none(tmp_path) is None  # a directory: unreadable, not there yet
    (tmp_path / "ok.json").write_text("[1]")
    assert read_json_or_none(tmp_path / "ok.json") == [1] == read_json(tmp_path / "ok.json")


def test_pid_alive_tells_a_running_process_from_a_finished_one():
    assert pid_alive(os.getpid())
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert not pid_alive(proc.pid)


def test_a_child_that_has_exited_but_is_not_yet_reaped_is_not_alive():
    import time

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline, "the child did not exit"
        time.sleep(0.05)
    assert not pid_alive(proc.pid)  # a zombie: exited, its status not read yet
    proc.wait()
