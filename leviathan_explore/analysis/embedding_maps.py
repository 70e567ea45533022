"""Embedding maps: pure numpy on ``[n, D]`` arrays, shared by the dashboard and the notebooks.

Token kinds of a token's text, 2-D maps (PCA, UMAP with its in-memory and optional
on-disk cache), nearest neighbours, leading digits, per-mode spreads of sigmoid
coordinates and how far neighbours share a label. Where the vectors come from is
``analysis.embedding_sources``.
"""

from __future__ import annotations

import hashlib
import math
import os
import string
import tempfile
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np

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


def neighbour_agreement(vectors: np.ndarray, labels: Any, k: int = 10) -> dict[str, float]:
    """How much the cosine geometry of ``vectors`` [n, D] follows ``labels`` [n].

    agreement: the mean, over points, of the share of their ``k`` nearest neighbours
    (cosine, the point itself excluded) with the same label; chance: the share expected
    when neighbours ignore labels, ``sum_c p_c (n_c - 1) / (n - 1)`` over label classes c.
    Their ratio ``lift`` is 1 for no structure and grows as neighbours share labels.
    """
    v = np.asarray(vectors, dtype=np.float64)
    labels = np.asarray(labels)
    if v.ndim != 2 or len(v) != len(labels):
        raise ValueError(f"vectors {v.shape} and labels ({len(labels)}) must agree on the number of points")
    n = len(v)
    if not 1 <= k < n:
        raise ValueError(f"k={k} is invalid: must be in [1, {n - 1}] for {n} points")
    if not np.isfinite(v).all():
        raise ValueError("vectors contain NaN or infinite values")
    unit = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -np.inf)
    nearest = np.argpartition(-sims, k - 1, axis=1)[:, :k]                      # [n, k]
    agreement = float((labels[nearest] == labels[:, None]).mean())
    _, sizes = np.unique(labels, return_counts=True)
    chance = float((sizes * (sizes - 1)).sum() / (n * (n - 1)))
    return {"agreement": agreement, "chance": chance, "lift": agreement / chance if chance > 0 else math.nan}
