"""Embedding sources: a Leviathan generator and a dense table over one vocabulary, and where they come from.

An ``EmbeddingSource`` pairs a Leviathan generator with a dense table of the same
vocabulary (a trained run pair, the same runs at initialisation, the shipped demo
snapshot, or an untrained model) and knows how to turn text into model ids and ids
back into text. The maps, neighbours and spreads drawn from it are
``analysis.embedding_maps``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..config import ConfigError, LeviathanConfig
from ..generator import LeviathanGenerator


@dataclass
class EmbeddingSource:
    """A generator and a dense table over one vocabulary, with its text mapping.

    ``dense_rows(ids)`` returns NaN rows for ids without a dense row (the demo ships
    rows only for its ``table_ids``); ``counts`` are training frequencies or None.
    """

    name: str
    description: str
    generator: LeviathanGenerator
    encode: Callable[[str], list[int]]
    decode_token: Callable[[int], str]
    table_lookup: Callable[[np.ndarray], np.ndarray]
    counts: np.ndarray | None = None
    table_ids: np.ndarray | None = None
    _text_cache: dict[int, str] = field(default_factory=dict, repr=False)

    @property
    def vocab_size(self) -> int:
        return self.generator.vocab_size

    @property
    def base(self) -> int:
        return self.generator.base

    @property
    def k(self) -> int:
        return self.generator.cfg.k

    def check_ids(self, ids) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        bad = ids[(ids < 0) | (ids >= self.vocab_size)]
        if len(bad):
            raise ValueError(f"token id {int(bad[0])} is outside the vocabulary [0, {self.vocab_size})")
        return ids

    @torch.no_grad()
    def generated(self, ids, chunk_size: int = 256) -> np.ndarray:
        """Generator embeddings [n, D] (float32), ``chunk_size`` ids at a time to bound memory."""
        ids = self.check_ids(ids)
        out = [self.generator.embed_ids(torch.from_numpy(ids[s:s + chunk_size])).numpy()
               for s in range(0, len(ids), chunk_size)]
        return np.concatenate(out) if out else np.zeros((0, self.generator.d_model), np.float32)

    @torch.no_grad()
    def sigmoid_coordinates(self, ids) -> np.ndarray:
        """u [n, M, d_seed] of each id."""
        return self.generator.mode_inputs(torch.from_numpy(self.check_ids(ids))).numpy()

    def dense_rows(self, ids) -> np.ndarray:
        return np.asarray(self.table_lookup(self.check_ids(ids)), dtype=np.float32)

    def has_dense_row(self, token_id: int) -> bool:
        return self.table_ids is None or bool(np.isin(token_id, self.table_ids))

    def text(self, token_id: int) -> str:
        if token_id not in self._text_cache:
            self._text_cache[token_id] = self.decode_token(int(token_id))
        return self._text_cache[token_id]

    def texts(self, ids) -> list[str]:
        return [self.text(int(i)) for i in self.check_ids(ids)]

    def sample(self, n: int, seed: int = 0) -> np.ndarray:
        """Up to ``n`` ids for a map: the most frequent when counts are known, else a
        seeded uniform sample; only ids with a dense row. Sorted ascending."""
        pool = np.arange(self.vocab_size) if self.table_ids is None else np.asarray(self.table_ids)
        if len(pool) <= n:
            return np.sort(pool)
        if self.counts is not None:
            order = np.argsort(-self.counts[pool], kind="stable")
            return np.sort(pool[order[:n]])
        return np.sort(np.random.default_rng(seed).choice(pool, size=n, replace=False))


def _build_generator(vocab_size: int, d_model: int, cfg: LeviathanConfig, seed: int) -> LeviathanGenerator:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        gen = LeviathanGenerator(vocab_size, d_model, cfg)
    return gen.eval()


def untrained_source(tokenizer: str = "o200k_base", d_model: int = 512,
                     generator: LeviathanConfig | None = None, seed: int = 0,
                     init_std: float = 0.02) -> EmbeddingSource:
    """A freshly initialised generator over the whole tokenizer vocabulary.

    The dense table is never materialised (200k x 512 floats is 400 MB): row ``i``
    is drawn on demand from a generator seeded with ``(seed, i)``, the same
    N(0, init_std) a dense model starts from.
    """
    from ..data import get_tokenizer

    tok = get_tokenizer(tokenizer)
    gen = _build_generator(tok.n_vocab, d_model, generator or LeviathanConfig(), seed)

    def table_lookup(ids: np.ndarray) -> np.ndarray:
        return np.stack([np.random.default_rng([seed, int(i)]).normal(0.0, init_std, d_model)
                         for i in ids]) if len(ids) else np.zeros((0, d_model))

    return EmbeddingSource(
        name="untrained", description=f"untrained generator, {tokenizer} vocabulary ({tok.n_vocab:,} ids), "
                                      f"width {d_model}; dense rows are their random initialisation",
        generator=gen, encode=tok.encode, decode_token=lambda i: tok.decode([i]),
        table_lookup=table_lookup)


# ---- the shipped demo snapshot ---------------------------------------------------------------

SNAPSHOT_FILE = "embeddings.safetensors"
_GEN_KEYS = ("codebooks", "seed_proj", "ln_weight", "ln_bias", "spline_delta", "out_proj")


def default_demo_dir() -> Path:
    """``results/demo`` of the repository (where ``scripts/make_demo.py`` writes)."""
    return Path(__file__).resolve().parents[2] / "results" / "demo"


def export_snapshot(generator: LeviathanGenerator, table: torch.Tensor, *, tokenizer: str,
                    tokenizer_ids: np.ndarray, counts: np.ndarray, unk_id: int | None,
                    out_path: str | os.PathLike, n_table_rows: int = 1536,
                    metadata: dict | None = None) -> Path:
    """Write a compact safetensors snapshot of a trained generator and dense table.

    Keeps the generator (float16) and the dense rows of the ``n_table_rows`` most
    frequent ids (float16), plus the model-id -> tokenizer-id map and the training
    counts, so that the geometry and anatomy tabs work without the checkpoints.
    tokenizer_ids: [V] int, -1 for ids without a tokenizer token (the unk id).
    """
    from safetensors.numpy import save_file

    V = generator.vocab_size
    counts = np.asarray(counts, dtype=np.int64)
    tokenizer_ids = np.asarray(tokenizer_ids, dtype=np.int64)
    if counts.shape != (V,) or tokenizer_ids.shape != (V,) or tuple(table.shape) != (V, generator.d_model):
        raise ValueError(f"counts {counts.shape}, tokenizer_ids {tokenizer_ids.shape} and table "
                         f"{tuple(table.shape)} must all cover the generator's vocabulary of {V}")
    keep = np.sort(np.argsort(-counts, kind="stable")[:n_table_rows])
    tensors = {f"generator.{k}": getattr(generator, k).detach().cpu().numpy().astype(np.float16)
               for k in _GEN_KEYS}
    tensors["table_rows"] = table.detach().cpu().float().numpy()[keep].astype(np.float16)
    tensors["table_ids"] = keep.astype(np.int32)
    tensors["tokenizer_ids"] = tokenizer_ids.astype(np.int32)
    tensors["token_counts"] = np.minimum(counts, np.iinfo(np.int32).max).astype(np.int32)
    meta = {"tokenizer": tokenizer, "vocab_size": str(V), "d_model": str(generator.d_model),
            "leviathan": json.dumps(dataclasses.asdict(generator.cfg)),
            "unk_id": "" if unk_id is None else str(unk_id), "info": json.dumps(metadata or {})}
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_path.parent, suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=meta)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a shipped file is world-readable
        os.replace(tmp, out_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out_path


def snapshot_source(path: str | os.PathLike | None = None, name: str = "demo") -> EmbeddingSource:
    """Load a snapshot written by ``export_snapshot`` (default: the shipped demo)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = Path(path) if path is not None else default_demo_dir() / SNAPSHOT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"embedding snapshot {path} does not exist")
    try:
        arrays = load_file(str(path))
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
        V, D = int(meta["vocab_size"]), int(meta["d_model"])
        lev = LeviathanConfig(**json.loads(meta["leviathan"]))
        unk = int(meta["unk_id"]) if meta.get("unk_id") else None
        tokenizer = meta["tokenizer"]
        info = json.loads(meta.get("info") or "{}")
    except (SafetensorError, KeyError, ValueError, TypeError, OSError) as exc:
        raise ValueError(f"embedding snapshot {path} is corrupt or incomplete: {exc}") from None
    except ConfigError as exc:
        raise ValueError(f"embedding snapshot {path} has invalid generator settings: {exc}") from None

    gen = _build_generator(V, D, lev, 0)
    try:
        with torch.no_grad():
            for k in _GEN_KEYS:
                getattr(gen, k).copy_(torch.from_numpy(arrays[f"generator.{k}"].astype(np.float32)))
        rows, table_ids = arrays["table_rows"].astype(np.float32), arrays["table_ids"].astype(np.int64)
        tokenizer_ids, counts = arrays["tokenizer_ids"].astype(np.int64), arrays["token_counts"].astype(np.int64)
    except (KeyError, RuntimeError) as exc:
        raise ValueError(f"embedding snapshot {path} is corrupt or incomplete: {exc}") from None

    from ..data import UNK_TEXT, get_tokenizer

    tok = get_tokenizer(tokenizer)
    to_model = {int(t): i for i, t in enumerate(tokenizer_ids) if t >= 0}
    row_of = {int(i): r for r, i in enumerate(table_ids)}

    def encode(text: str) -> list[int]:
        if unk is None:
            missing = [t for t in tok.encode(text) if t not in to_model]
            if missing:
                raise ValueError(f"tokenizer id {missing[0]} is not in the snapshot's vocabulary")
        return [to_model.get(t, unk) for t in tok.encode(text)]

    def decode_token(i: int) -> str:
        t = int(tokenizer_ids[i])
        return tok.decode([t]) if t >= 0 else UNK_TEXT

    def table_lookup(ids: np.ndarray) -> np.ndarray:
        out = np.full((len(ids), D), np.nan, dtype=np.float32)
        for j, i in enumerate(ids):
            r = row_of.get(int(i))
            if r is not None:
                out[j] = rows[r]
        return out

    desc = info.get("description") or f"snapshot {path.name}"
    return EmbeddingSource(name=name, description=desc, generator=gen, encode=encode,
                           decode_token=decode_token, table_lookup=table_lookup, counts=counts,
                           table_ids=table_ids)


# ---- trained runs ------------------------------------------------------------------------------

def run_source(leviathan_run: str | os.PathLike, dense_run: str | os.PathLike | None = None) -> EmbeddingSource:
    """A trained Leviathan run (and optionally a dense run on the same data) as a source.

    Weights come from the runs' latest safetensors checkpoints (``training.load_run_model``);
    the token text and counts from the run's data directory when it still exists.
    """
    from ..training.runs import SUMMARY, load_run_model, read_summary

    leviathan_run = Path(leviathan_run)
    lev_model = load_run_model(leviathan_run)
    if getattr(lev_model.cfg, "token_repr", None) != "leviathan":
        raise ValueError(f"run {leviathan_run.name} is not a Leviathan run")
    gen = lev_model.generator.eval()
    V, D = gen.vocab_size, gen.d_model
    table = None
    if dense_run is not None:
        dense_model = load_run_model(Path(dense_run))
        if dense_model.cfg.token_repr != "table" or dense_model.cfg.vocab_size != V:
            raise ValueError(f"run {Path(dense_run).name} is not a dense run over the same "
                             f"{V:,}-token vocabulary")
        table = dense_model.embed_tokens.weight.detach().float().numpy()

    summary = read_summary(leviathan_run)  # FileNotFoundError, or files.InvalidJsonError for a torn one
    if not isinstance(summary, dict):
        raise ValueError(f"{leviathan_run / SUMMARY} must hold a JSON object")
    data_dir = (summary.get("data") or {}).get("dir")
    encode, decode_token, counts = _data_text(data_dir, V)

    def table_lookup(ids: np.ndarray) -> np.ndarray:
        if table is None:
            return np.full((len(ids), D), np.nan, dtype=np.float32)
        return table[ids]

    return EmbeddingSource(
        name=leviathan_run.name,
        description=f"run {leviathan_run.name}" + (f" with dense run {Path(dense_run).name}" if dense_run else ""),
        generator=gen, encode=encode, decode_token=decode_token, table_lookup=table_lookup,
        counts=counts, table_ids=None if table is not None else np.zeros(0, dtype=np.int64))


def initial_source(trained: EmbeddingSource, leviathan_run: str | os.PathLike,
                   dense_run: str | os.PathLike | None = None) -> EmbeddingSource:
    """``trained`` (an ``EmbeddingSource`` of a run pair) with the runs'
    initial weights instead of the trained ones; text, counts and ids are shared."""
    from ..training.runs import initial_model

    generator = initial_model(leviathan_run).generator.eval()
    table = None
    if dense_run is not None:
        table = initial_model(dense_run).embed_tokens.weight.detach().float().numpy()

    def table_lookup(ids: np.ndarray) -> np.ndarray:
        if table is None:
            return np.full((len(ids), generator.d_model), np.nan, dtype=np.float32)
        return table[ids]

    return dataclasses.replace(trained, name=f"{trained.name} (initial)", generator=generator,
                               table_lookup=table_lookup, description=f"{trained.description}, at initialisation",
                               _text_cache={})


def _data_text(data_dir: str | None, vocab_size: int):
    """(encode, decode_token, counts) from a run's data directory, or placeholders without it."""
    if data_dir and Path(data_dir).is_dir():
        from ..data import load_token_data

        data = load_token_data(data_dir)
        if data.vocab_size == vocab_size:
            return data.encode, (lambda i: data.decode([i])), np.asarray(data.token_counts())

    def encode(text: str) -> list[int]:
        raise ValueError(f"the run's data directory {data_dir!r} is missing: cannot turn text into its token ids")

    return encode, (lambda i: f"<{i}>"), None
