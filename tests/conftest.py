"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory) -> Path:
    """Token shards of the embedded corpus (python-stdlib), built once per test session.

    Vocabulary compacted to 2,048 kept ids + 1 unknown (model vocab 2,049); about
    200k training tokens and 3k validation tokens; builds in about a second.
    """
    from leviathan_explore.data import build_corpus

    out = tmp_path_factory.mktemp("tiny-data") / "python-stdlib-2048"
    build_corpus("python-stdlib", out, compact=2048, max_tokens=205_000, progress=False)
    return out


@pytest.fixture(scope="session")
def quick_studies(tmp_path_factory) -> Path:
    """The quick forms of the committed laptop and neighbours studies, run once per test session
    into one folder (the neighbours study finds the laptop study's by its name there)."""
    from leviathan_explore.cli import main

    root = tmp_path_factory.mktemp("quick-studies")
    sweeps = Path(__file__).resolve().parents[1] / "results" / "sweeps"
    assert main(["study", "run", str(sweeps / "laptop-study"), "--quick", "--out", str(root / "laptop-study-quick")]) == 0
    assert main(["study", "run", str(sweeps / "neighbours"), "--quick", "--out", str(root / "neighbours-quick")]) == 0
    return root
