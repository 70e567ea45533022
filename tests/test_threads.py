"""Thread count: --threads, LEVIATHAN_THREADS, the busy-machine default, and what a run records."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from leviathan_explore import threads


def test_explicit_threads_win_then_the_environment_then_the_default(monkeypatch):
    monkeypatch.setenv(threads.THREADS_ENV, "3")
    assert threads.resolve_threads(2) == 2
    assert threads.resolve_threads() == 3
    monkeypatch.delenv(threads.THREADS_ENV)
    monkeypatch.setattr(threads, "default_threads", lambda: 7)
    assert threads.resolve_threads() == 7


@pytest.mark.parametrize("bad", ["0", "-2", "two", "1.5"])
def test_a_bad_thread_count_names_its_source_and_value(monkeypatch, bad):
    monkeypatch.setenv(threads.THREADS_ENV, bad)
    with pytest.raises(ValueError, match=f"LEVIATHAN_THREADS='{bad}' is invalid: must be a positive integer"):
        threads.resolve_threads()


def test_the_default_leaves_busy_cores_to_their_owners(monkeypatch):
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    for busy, want in [(0.0, 2), (0.4, 2), (0.9, 1), (1.6, 1), (2.0, 1), (5.0, 1)]:
        monkeypatch.setattr(threads, "busy_cores", lambda sample_s=0.25, b=busy: b)
        assert threads.default_threads() == want, busy


def test_busy_cores_sees_a_spinning_process():
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        import time

        time.sleep(0.5)
        assert threads.busy_cores(0.5) >= 0.7
    finally:
        hog.kill()
        hog.wait()


def test_set_threads_sets_torch(monkeypatch):
    before = torch.get_num_threads()
    try:
        assert threads.set_threads(1) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
