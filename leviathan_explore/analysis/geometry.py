"""Embedding geometry: where embeddings come from, 2-D maps, neighbours, token kinds.

An ``EmbeddingSource`` pairs a Leviathan generator with a dense table of the same
vocabulary (a trained run pair, the shipped demo snapshot, or an untrained
model) and knows how to turn text into model ids and ids back into text. The
maps, neighbours and spreads below are plain numpy on ``[n, D]`` arrays, so the
dashboard and the notebooks share them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import string
import tempfile
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..config import ConfigError, LeviathanConfig
from ..generator import LeviathanGenerator

TOKEN_KINDS = ("word", "number", "punctuation", "whitespace", "code", "other")
_CODE_SYMBOLS = set("()[]{}<>=+-*/%&|^~!:;.,@#$\\\"'`?_")


def token_kind(text: str) -> str:
    """Classify a token's text: word, number, punctuation, whitespace, code or other.

    Leading/trailing spaces are ignored (BPE glues a space to the next word).
    "code" is a mix of identifier characters and symbols (``_init``, ``):``,
    ``==``); "other" is an incomplete UTF-8 fragment or an unprintable token.
    """
    if text == "" or "\ufffd" in text:
        return "other"
    core = text.strip()
    if core == "":
        return "whitespace"
    if all(unicodedata.category(c).startswith("C") for c in core):
        return "other"
    if core.isalpha():
        return "word"
    if core.replace(".", "").replace(",", "").replace("_", "").isdigit() and core[0].isdigit():
        return "number"
    if len(core) == 1 and (core in string.punctuation or unicodedata.category(core).startswith(("P", "S"))):
        return "punctuation"
    if all(c in _CODE_SYMBOLS or c.isalnum() for c in core):
        return "code"
    if all(unicodedata.category(c).startswith(("P", "S")) for c in core):
        return "punctuation"
    return "other"


# ---- 2-D maps ----------------------------------------------------------------------------------

def pca_2d(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project rows of ``x`` [n, D] on their top two principal axes.

    Returns (coordinates [n, 2], explained variance ratio [2]). Each axis's sign is
    fixed so that its largest-magnitude loading is positive (deterministic output).
    """
    x = _as_matrix(x)
    centred = x - x.mean(0, keepdims=True)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    axes = vt[:2]
    signs = np.sign(axes[np.arange(len(axes)), np.abs(axes).argmax(1)])
    axes = axes * np.where(signs == 0, 1.0, signs)[:, None]
    coords = centred @ axes.T
    if coords.shape[1] < 2:  # D == 1: a flat second axis
        coords = np.concatenate([coords, np.zeros((len(x), 2 - coords.shape[1]))], 1)
    var = s**2
    ratio = var[:2] / var.sum() if var.sum() > 0 else np.zeros(2)
    return coords, np.pad(ratio, (0, 2 - len(ratio)))


_UMAP_MEMORY: dict[str, np.ndarray] = {}


def umap_2d(x: np.ndarray, *, n_neighbors: int = 15, seed: int = 0,
            cache_dir: str | os.PathLike | None = None) -> np.ndarray:
    """UMAP of rows of ``x`` [n, D] to [n, 2], cached by the content of ``x`` and the settings.

    The cache is in memory and, with ``cache_dir``, on disk as ``.npy`` (loaded with
    ``allow_pickle=False``). umap-learn is imported here: its numba start-up takes
    seconds, so nothing pays for it until a UMAP is asked for.
    """
    x = _as_matrix(x).astype(np.float32)
    if len(x) < 4:
        raise ValueError(f"UMAP needs at least 4 points, got {len(x)}")
    n_neighbors = min(n_neighbors, len(x) - 1)
    key = hashlib.sha256(x.tobytes() + f"{x.shape}|{n_neighbors}|{seed}".encode()).hexdigest()[:32]
    if key in _UMAP_MEMORY:
        return _UMAP_MEMORY[key].copy()
    path = Path(cache_dir) / f"umap-{key}.npy" if cache_dir is not None else None
    if path is not None and path.is_file():
        coords = np.load(path, allow_pickle=False)
    else:
        import warnings

        import umap  # deferred: heavy import

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "n_jobs overridden by random_state" is expected
            coords = umap.UMAP(n_components=2, n_neighbors=n_neighbors, random_state=seed,
                               init="random" if len(x) < 16 else "spectral").fit_transform(x)
        coords = np.asarray(coords, dtype=np.float64)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            _atomic_save_npy(path, coords)
    _UMAP_MEMORY[key] = coords
    return coords.copy()


def _atomic_save_npy(path: Path, array: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npy.tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, array, allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _as_matrix(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"expected a non-empty [n, D] array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("embeddings contain NaN or infinite values")
    return x


# ---- neighbours, digits, spreads -------------------------------------------------------------

def nearest_neighbours(vectors: np.ndarray, query: int, k: int = 10,
                       centre: bool = False) -> list[tuple[int, float]]:
    """The ``k`` rows most cosine-similar to row ``query`` (itself excluded): [(row, similarity)].

    centre: subtract the mean row first. A young generator gives every token nearly the
    same direction (its features start near one), so raw cosines are all ~1; centred
    cosines compare what distinguishes the tokens.
    """
    v = _as_matrix(vectors)
    if centre:
        v = v - v.mean(0, keepdims=True)
    if not 0 <= query < len(v):
        raise ValueError(f"query row {query} is outside [0, {len(v)})")
    norms = np.linalg.norm(v, axis=1)
    sims = v @ v[query] / np.maximum(norms * norms[query], 1e-12)
    sims[query] = -np.inf
    k = min(k, len(v) - 1)
    top = np.argpartition(-sims, k - 1)[:k] if k > 0 else np.array([], dtype=int)
    top = top[np.argsort(-sims[top], kind="stable")]
    return [(int(i), float(sims[i])) for i in top]


def first_digits(ids: np.ndarray, base: int, k: int) -> np.ndarray:
    """The most significant base-``base`` digit of each id (the generator's digit 1)."""
    return (np.asarray(ids, dtype=np.int64) // base ** (k - 1)) % base


def mode_spread(u: np.ndarray) -> dict[str, list[float]]:
    """Per-mode summary of sigmoid coordinates ``u`` [n, M, d_seed] in (0, 1).

    For each mode: quantiles (p05, p25, p50, p75, p95) of all n*d_seed values, and
    ``token_std``, the standard deviation across tokens averaged over coordinates
    (near 0: the mode sees every token alike; large: it separates tokens).
    """
    u = np.asarray(u, dtype=np.float64)
    if u.ndim != 3 or u.shape[0] == 0:
        raise ValueError(f"expected sigmoid coordinates of shape [n, M, d_seed], got {u.shape}")
    flat = u.transpose(1, 0, 2).reshape(u.shape[1], -1)  # [M, n * d_seed]
    q = np.quantile(flat, [0.05, 0.25, 0.5, 0.75, 0.95], axis=1)
    return {"mode": list(range(u.shape[1])), "p05": q[0].tolist(), "p25": q[1].tolist(),
            "p50": q[2].tolist(), "p75": q[3].tolist(), "p95": q[4].tolist(),
            "token_std": u.std(0).mean(1).tolist()}


# ---- embedding sources ----------------------------------------------------------------------

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
