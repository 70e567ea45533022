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
