"""``leviathan_explore.bench`` under its old name, for the importers that still use it.

The same functions; what this module adds is the default token source of
`leviathan-explore bench`: the committed sample of real o200k ids of Python source,
``benchmarks/o200k_code_sample.npy`` (``benchmarks/make_token_sample.py`` writes it), used
when present. The package itself does not know where a checkout keeps that file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from . import bench as _bench
from .bench import *  # noqa: F401,F403 - the package's names, unchanged
from .bench import __all__ as _bench_names

TOKEN_SAMPLE = Path(__file__).resolve().parent.parent / "benchmarks" / "o200k_code_sample.npy"


def token_ids(vocab_size: int, n: int, tokens_file: str | os.PathLike | None = None, seed: int = 0, *,
              o200k_sample: str | os.PathLike | None = TOKEN_SAMPLE):
    """``bench.token_ids`` with the committed sample as the default o200k source."""
    return _bench.token_ids(vocab_size, n, tokens_file, seed, o200k_sample=o200k_sample)


def run_benchmarks(*args: Any, o200k_sample: str | os.PathLike | None = TOKEN_SAMPLE, **kwargs: Any) -> dict:
    """``bench.run_benchmarks`` with the committed sample as the default o200k source."""
    return _bench.run_benchmarks(*args, o200k_sample=o200k_sample, **kwargs)


__all__ = [*_bench_names, "TOKEN_SAMPLE"]
