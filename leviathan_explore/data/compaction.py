"""Vocabulary compaction for CPU-sized demos.

A tiny model on the 200k-id ``o200k_base`` vocabulary spends nearly all of its time
in the output softmax. Compaction keeps the ``K`` most frequent training ids (the
end-of-text id always among them) and maps every other id to one unknown id, so the
model vocabulary has ``K + 1`` ids. Model ids are frequency ranks: model id 0 is the
most frequent kept token, ``K`` is the unknown id. The mapping is saved as
``vocab_map.json`` next to the shards so that decoding can map back.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..files import read_json, write_json_atomic

UNK_TEXT = "<|unk|>"  # how decode renders the unknown id
VOCAB_MAP_FILE = "vocab_map.json"


@dataclass(frozen=True)
class VocabMap:
    """Model id ``m < K`` is tokenizer id ``model_to_tokenizer[m]``; model id ``K`` is unknown."""

    tokenizer: str
    tokenizer_vocab_size: int
    model_to_tokenizer: np.ndarray  # int64[K]

    @property
    def n_kept(self) -> int:
        return len(self.model_to_tokenizer)

    @property
    def unk_id(self) -> int:
        return self.n_kept

    @property
    def vocab_size(self) -> int:
        return self.n_kept + 1

    def tokenizer_to_model_table(self) -> np.ndarray:
        """uint32[tokenizer_vocab_size]: the model id of each tokenizer id (``unk_id`` if dropped)."""
        table = np.full(self.tokenizer_vocab_size, self.unk_id, dtype=np.uint32)
        table[self.model_to_tokenizer] = np.arange(self.n_kept, dtype=np.uint32)
        return table

    def model_id(self, tokenizer_id: int) -> int:
        hits = np.flatnonzero(self.model_to_tokenizer == tokenizer_id)
        return int(hits[0]) if len(hits) else self.unk_id

    def to_json(self, eot_model_id: int) -> dict:
        return {"tokenizer": self.tokenizer, "tokenizer_vocab_size": self.tokenizer_vocab_size,
                "kept": self.n_kept, "unk_id": self.unk_id, "eot_id": eot_model_id,
                "model_to_tokenizer": [int(i) for i in self.model_to_tokenizer]}

    def save(self, path: Path, eot_model_id: int) -> None:
        write_json_atomic(path, self.to_json(eot_model_id), indent=None)  # one line: it lists every kept id

    @classmethod
    def load(cls, path: Path) -> "VocabMap":
        path = Path(path)
        try:
            d = read_json(path)
            ids = np.asarray(d["model_to_tokenizer"], dtype=np.int64)
            vmap = cls(str(d["tokenizer"]), int(d["tokenizer_vocab_size"]), ids)
        except (KeyError, TypeError, ValueError) as exc:  # ValueError: also files.InvalidJsonError
            raise ValueError(f"{path} is not a valid vocabulary map ({type(exc).__name__}: {exc}); rebuild the data") from None
        if ids.ndim != 1 or len(ids) == 0 or ids.min() < 0 or ids.max() >= vmap.tokenizer_vocab_size \
                or len(np.unique(ids)) != len(ids):
            raise ValueError(f"{path} is not a valid vocabulary map (ids must be distinct and in "
                             f"[0, {vmap.tokenizer_vocab_size})); rebuild the data")
        return vmap


def compact_vocabulary(counts: np.ndarray, k: int, *, tokenizer: str, keep: Sequence[int] = ()) -> VocabMap:
    """Keep the ``k`` most frequent ids of ``counts`` (int[tokenizer_vocab]), always including ``keep``.

    Ties, including the many never-seen ids when ``k`` exceeds the ids seen, go to the
    smaller id, so the result is deterministic.
    """
    counts = np.asarray(counts, dtype=np.int64)
    vocab = len(counts)
    if not 1 <= k < vocab:
        raise ValueError(f"compact={k} is invalid: must be in [1, {vocab - 1}] for a {vocab}-id tokenizer")
    forced = list(dict.fromkeys(int(i) for i in keep))
    if len(forced) > k:
        raise ValueError(f"compact={k} is invalid: must be at least {len(forced)} to keep the special ids {forced}")
    by_frequency = np.lexsort((np.arange(vocab), -counts))  # count descending, then id ascending
    forced_set = set(forced)
    rest = by_frequency[~np.isin(by_frequency, forced)][: k - len(forced)] if forced_set else by_frequency[:k]
    kept = np.concatenate([np.asarray(forced, dtype=np.int64), rest.astype(np.int64)])
    kept = kept[np.lexsort((kept, -counts[kept]))]  # model ids are frequency ranks
    return VocabMap(tokenizer, vocab, kept)


def remap_file(src: Path, dst: Path, table: np.ndarray, chunk: int = 1 << 24) -> None:
    """Write ``table[ids]`` for the uint32 ids in ``src`` to ``dst``, ``chunk`` tokens at a time."""
    n = Path(src).stat().st_size // 4
    with open(dst, "wb") as out:
        if n:
            ids = np.memmap(src, dtype=np.uint32, mode="r")
            for start in range(0, n, chunk):
                table[ids[start:start + chunk]].astype(np.uint32, copy=False).tofile(out)
            del ids
