"""Write benchmarks/o200k_code_sample.npy: 65,536 real o200k_base ids of Python source.

The GPU benchmark machine has no tokenizer package, so the bench reads these ids
instead of tokenising there. Documents come from the embedded corpus (the Python
standard library, in the data layer's shuffled order); at most 1,024 tokens from
each, documents separated by the end-of-text id.

    python benchmarks/make_token_sample.py
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from leviathan_explore.data import get_tokenizer, iter_documents  # noqa: E402

TOKEN_SAMPLE = Path(__file__).resolve().parent / "o200k_code_sample.npy"  # what `leviathan-explore bench` reads
N_TOKENS = 65_536
PER_DOCUMENT = 1_024


def main() -> None:
    tok = get_tokenizer("o200k_base")
    ids: list[int] = []
    for doc in iter_documents("python-stdlib", seed=0):
        ids.extend(tok.encode(doc)[:PER_DOCUMENT])
        ids.append(tok.eot_id)
        if len(ids) >= N_TOKENS:
            break
    sample = np.asarray(ids[:N_TOKENS], dtype=np.uint32)
    fd, tmp = tempfile.mkstemp(dir=TOKEN_SAMPLE.parent, suffix=".npy")
    os.close(fd)
    np.save(tmp, sample)
    os.chmod(tmp, 0o644)
    os.replace(tmp, TOKEN_SAMPLE)
    print(f"{TOKEN_SAMPLE}: {len(sample)} ids, {len(np.unique(sample))} distinct, max {sample.max()}")


if __name__ == "__main__":
    main()
