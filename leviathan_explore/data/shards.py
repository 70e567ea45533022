"""Token shards: build them from a corpus, load them memory-mapped.

A data directory holds

- ``train.bin``, ``val.bin``: uint32 token ids in model space, each document followed
  by the end-of-text id; the split is by document;
- ``manifest.json``: source, tokenizer, vocabulary, token and document counts,
  skipped documents, the sha256 of the two ``.bin`` files, and the command that made it;
- ``vocab_map.json`` when the vocabulary was compacted (see ``compaction.py``).

A build writes into a temporary sibling folder and renames it into place at the end,
so an interrupted build leaves no half-written data directory, and a rerun with the
same arguments writes byte-identical files (nothing time-dependent is recorded).
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..config import ConfigError
from ..files import InvalidJsonError, pid_alive, read_json, write_json_atomic
from .compaction import UNK_TEXT, VOCAB_MAP_FILE, VocabMap, compact_vocabulary, remap_file
from .corpora import SOURCES, CorpusUnavailable, iter_documents
from .tokenizers import DEFAULT_TOKENIZER, Tokenizer, get_tokenizer

FORMAT = "leviathan-explore token shards v1"
MANIFEST_FILE = "manifest.json"
SPLIT_FILES = {"train": "train.bin", "val": "val.bin"}
# Budgets when --max-tokens is not given. The whole stdlib is ~10M o200k tokens and
# builds in seconds; the Pile is endless, so hf gets a budget.
DEFAULT_MAX_TOKENS: dict[str, int | None] = {"python-stdlib": None, "files": None,
                                             "hf": 100_000_000, "site-packages": None, "python-docs": None}
_FLUSH_TOKENS = 1 << 22  # buffer ~16 MB of ids before writing
_BUILDING_MARK = "BUILDING"  # pid of the building process, inside a temporary build folder


# ---- build ------------------------------------------------------------------------------------

def document_in_val(index: int, seed: int, val_fraction: float) -> bool:
    """Whether document ``index`` goes to validation: a seeded hash, so the split is stable."""
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2.0**64 < val_fraction


class _SplitWriter:
    """Appends documents (uint32 arrays) to one ``.bin`` file, optionally counting ids."""

    def __init__(self, path: Path, count_vocab: int | None = None):
        self.path = path
        self._fh = open(path, "wb")
        self._buffer: list[np.ndarray] = []
        self._buffered = 0
        self.tokens = 0
        self.documents = 0
        self.counts = np.zeros(count_vocab, dtype=np.int64) if count_vocab else None

    def add(self, ids: np.ndarray) -> None:
        self._buffer.append(ids)
        self._buffered += len(ids)
        self.tokens += len(ids)
        self.documents += 1
        if self._buffered >= _FLUSH_TOKENS:
            self.flush()

    def flush(self) -> None:
        if not self._buffer:
            return
        block = np.concatenate(self._buffer)
        block.tofile(self._fh)
        if self.counts is not None:
            self.counts += np.bincount(block, minlength=len(self.counts))
        self._buffer, self._buffered = [], 0

    def close(self) -> None:
        if self._fh.closed:
            return
        self.flush()
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()


def _validate_build_args(source: str, max_tokens: Any, compact: Any, val_fraction: Any,
                         seed: Any, tok: Tokenizer) -> None:
    if source not in SOURCES:
        raise ConfigError("source", source, f"must be one of {list(SOURCES)}")
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 2):
        raise ConfigError("max_tokens", max_tokens, "must be an integer >= 2, or None for the whole corpus")
    if compact is not None and (isinstance(compact, bool) or not isinstance(compact, int)
                                or not 1 <= compact < tok.n_vocab):
        raise ConfigError("compact", compact, f"must be an integer in [1, {tok.n_vocab - 1}] for {tok.name}")
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0 < val_fraction <= 0.5:
        raise ConfigError("val_fraction", val_fraction, "must be a number in (0, 0.5]")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError("seed", seed, "must be an integer >= 0")


def _check_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError("out", str(out), "is a file; give a directory for the token data")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST_FILE).is_file():
        raise ConfigError("out", str(out), "exists and is not a token data directory (no manifest.json); "
                                           "choose a new or empty directory")


def _remove_stale_builds(out: Path) -> None:
    """Remove temporary build folders for ``out`` left by killed builds (their process is gone)."""
    if not out.parent.is_dir():
        return
    for tmp in out.parent.glob(f".{out.name}.tmp-*"):
        mark = tmp / _BUILDING_MARK
        try:
            pid = int(mark.read_text())
        except (OSError, ValueError):
            pid = -1
        if pid <= 0 or not pid_alive(pid):
            shutil.rmtree(tmp, ignore_errors=True)


def _install(tmp: Path, out: Path) -> None:
    """Move the finished build ``tmp`` to ``out``, replacing an earlier build there."""
    (tmp / _BUILDING_MARK).unlink()
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def _sha256_files(paths: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
    return h.hexdigest()


# The manifest's writer, named here so that a test can make the disk fill up at this point.
_write_json = write_json_atomic


def build_corpus(source: str, out_dir: str | os.PathLike, *, tokenizer: str = DEFAULT_TOKENIZER,
                 max_tokens: int | None = None, glob: Sequence[str] | str | None = None,
                 dataset: str | None = None, compact: int | None = None, val_fraction: float = 0.02,
                 seed: int = 0, progress: bool = True, created_by: str | None = None) -> dict:
    """Tokenise ``source`` into ``out_dir`` (train.bin, val.bin, manifest.json[, vocab_map.json]).

    ``max_tokens`` caps train + validation tokens, end-of-text ids included (the last
    document is cut to fit); None means the source's default (``DEFAULT_MAX_TOKENS``).
    ``compact=K`` keeps the K most frequent training ids plus one unknown id.
    Returns the manifest, plus a ``build`` entry (seconds, tokens_per_s, out_dir) that
    is not written to disk so that reruns stay byte-identical.
    """
    tok = get_tokenizer(tokenizer)
    started = time.perf_counter()  # after the one-off tokenizer load: tokens_per_s measures the build
    _validate_build_args(source, max_tokens, compact, val_fraction, seed, tok)
    if max_tokens is None:
        max_tokens = DEFAULT_MAX_TOKENS[source]
    out = Path(out_dir)
    _check_out_dir(out)
    skipped: Counter = Counter()
    documents = iter_documents(source, seed=seed, glob=glob, dataset=dataset, skipped=skipped)

    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_builds(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        (tmp / _BUILDING_MARK).write_text(str(os.getpid()))
        train = _SplitWriter(tmp / SPLIT_FILES["train"], count_vocab=tok.n_vocab)
        val = _SplitWriter(tmp / SPLIT_FILES["val"])
        try:
            budget_reached = _tokenize_into(documents, tok, train, val, max_tokens=max_tokens,
                                            seed=seed, val_fraction=val_fraction, progress=progress,
                                            desc=f"{source} -> {out}")
        finally:
            train.close()
            val.close()
        if train.documents == 0 or val.documents == 0:
            n = train.documents + val.documents
            reasons = ", ".join(f"{k}: {v}" for k, v in sorted(skipped.items())) or "none"
            raise CorpusUnavailable(f"source {source} gave {n} usable document(s) (skipped: {reasons}); "
                                    f"at least 2 are needed, one for training and one for validation")

        vocab_size, eot_id, unk_id = tok.n_vocab, tok.eot_id, None
        if compact is not None:
            vmap = compact_vocabulary(train.counts, compact, tokenizer=tok.name, keep=[tok.eot_id])
            table = vmap.tokenizer_to_model_table()
            for split in SPLIT_FILES.values():
                remap_file(tmp / split, tmp / (split + ".model"), table)
                os.replace(tmp / (split + ".model"), tmp / split)
            vocab_size, eot_id, unk_id = vmap.vocab_size, int(table[tok.eot_id]), vmap.unk_id
            vmap.save(tmp / VOCAB_MAP_FILE, eot_id)

        manifest = {
            "format": FORMAT,
            "source": source,
            "source_options": _source_options(source, glob, dataset),
            "tokenizer": tok.name,
            "tokenizer_vocab_size": tok.n_vocab,
            "vocab_size": vocab_size,
            "eot_id": eot_id,
            "unk_id": unk_id,
            "compact": compact,
            "dtype": "uint32",
            "train_tokens": train.tokens,
            "val_tokens": val.tokens,
            "n_documents": {"train": train.documents, "val": val.documents},
            "skipped_documents": sum(skipped.values()),
            "skipped_reasons": dict(sorted(skipped.items())),
            "max_tokens": max_tokens,
            "budget_reached": budget_reached,
            "val_fraction": val_fraction,
            "seed": seed,
            "content_hash": _sha256_files([tmp / SPLIT_FILES["train"], tmp / SPLIT_FILES["val"]]),
            "python_version": platform.python_version(),
            "created_by": created_by or _describe_call(source, out, tok.name, max_tokens, glob, dataset,
                                                       compact, val_fraction, seed),
        }
        _write_json(tmp / MANIFEST_FILE, manifest)
        _install(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    seconds = time.perf_counter() - started
    total = manifest["train_tokens"] + manifest["val_tokens"]
    return {**manifest, "build": {"seconds": seconds, "tokens_per_s": total / max(seconds, 1e-9), "out_dir": str(out)}}


def _tokenize_into(documents, tok: Tokenizer, train: _SplitWriter, val: _SplitWriter, *,
                   max_tokens: int | None, seed: int, val_fraction: float, progress: bool, desc: str) -> bool:
    """Encode documents into the two writers; True when ``max_tokens`` cut the corpus short.

    The last document is held back until the end: if one split would otherwise be empty
    it goes there, so any corpus of two or more documents yields both splits. A corpus of
    one document (a single ``input.txt``) is split by position instead: its first
    ``1 - val_fraction`` of tokens train, the rest validate, each part ending with the
    end-of-text id (``split_single_document``).
    """
    from tqdm.auto import tqdm

    total, index, budget_reached = 0, 0, False
    pending: tuple[np.ndarray, bool] | None = None
    with tqdm(total=max_tokens, unit="tok", unit_scale=True, desc=desc, disable=not progress,
              mininterval=0.5) as bar:
        for text in documents:
            ids = tok.encode(text)
            if not ids:
                continue
            if max_tokens is not None and total + len(ids) + 1 > max_tokens:
                budget_reached = True
                keep = max_tokens - total - 1
                if keep < 1:
                    break
                ids = ids[:keep]
            doc = np.empty(len(ids) + 1, dtype=np.uint32)
            doc[:-1] = ids
            doc[-1] = tok.eot_id
            if pending is not None:
                (val if pending[1] else train).add(pending[0])
            pending = (doc, document_in_val(index, seed, val_fraction))
            index += 1
            total += len(doc)
            bar.update(len(doc))
            if index % 256 == 0:
                bar.set_postfix(docs=index, refresh=False)
            if budget_reached:
                break
    if pending is not None:
        doc, in_val = pending
        parts = split_single_document(doc, val_fraction, tok.eot_id) if val.documents == train.documents == 0 else None
        if parts is not None:
            train.add(parts[0])
            val.add(parts[1])
            return budget_reached
        if val.documents == 0 and train.documents > 0:
            in_val = True
        elif train.documents == 0 and val.documents > 0:
            in_val = False
        (val if in_val else train).add(doc)
    return budget_reached


def split_single_document(doc: np.ndarray, val_fraction: float,
                          eot_id: int) -> tuple[np.ndarray, np.ndarray] | None:
    """A lone document (ids ending with ``eot_id``) cut into a training and a validation part:
    the first ``round((1 - val_fraction) * n)`` of its ``n`` tokens train (at least one token
    each side), the rest validate; both parts end with ``eot_id``. None below two tokens."""
    body = doc[:-1] if len(doc) and doc[-1] == eot_id else doc
    n = len(body)
    if n < 2:
        return None
    cut = min(max(1, round((1 - val_fraction) * n)), n - 1)
    eot = np.array([eot_id], dtype=doc.dtype)
    return np.concatenate([body[:cut], eot]), np.concatenate([body[cut:], eot])


def _source_options(source: str, glob, dataset) -> dict:
    if source == "files":
        return {"glob": [glob] if isinstance(glob, str) else list(glob or [])}
    if source == "hf":
        from .corpora import DEFAULT_HF_DATASET, HF_SHUFFLE_BUFFER
        return {"dataset": dataset or DEFAULT_HF_DATASET, "shuffle_buffer": HF_SHUFFLE_BUFFER}
    return {}


def _describe_call(source, out, tokenizer, max_tokens, glob, dataset, compact, val_fraction, seed) -> str:
    args = [f"source={source!r}", f"out_dir={str(out)!r}", f"tokenizer={tokenizer!r}", f"max_tokens={max_tokens!r}"]
    if glob is not None:
        args.append(f"glob={glob!r}")
    if dataset is not None:
        args.append(f"dataset={dataset!r}")
    args += [f"compact={compact!r}", f"val_fraction={val_fraction!r}", f"seed={seed!r}"]
    return f"leviathan_explore.data.build_corpus({', '.join(args)})"


# ---- load -------------------------------------------------------------------------------------

_REQUIRED_KEYS = ("source", "tokenizer", "tokenizer_vocab_size", "vocab_size", "eot_id",
                  "compact", "train_tokens", "val_tokens", "content_hash")


class TokenData:
    """Memory-mapped token shards of one data directory, in model-id space.

    ``train``/``val``: np.memmap uint32 ids, documents separated by ``eot_id``.
    ``vocab_size``: the model's vocabulary (K + 1 when compacted, else the tokenizer's).
    """

    def __init__(self, path: Path, manifest: dict, train: np.ndarray, val: np.ndarray,
                 vocab_map: VocabMap | None):
        self.path = path
        self.manifest = manifest
        self.train = train
        self.val = val
        self.vocab_map = vocab_map
        self._counts: np.ndarray | None = None
        self._to_model: np.ndarray | None = None

    @property
    def vocab_size(self) -> int:
        return int(self.manifest["vocab_size"])

    @property
    def eot_id(self) -> int:
        return int(self.manifest["eot_id"])

    @property
    def unk_id(self) -> int | None:
        return None if self.vocab_map is None else self.vocab_map.unk_id

    @property
    def tokenizer_name(self) -> str:
        return str(self.manifest["tokenizer"])

    @property
    def tokenizer(self) -> Tokenizer:
        return get_tokenizer(self.tokenizer_name)

    def token_counts(self) -> np.ndarray:
        """int64[vocab_size]: how often each model id occurs in the training split (cached)."""
        if self._counts is None:
            counts = np.zeros(self.vocab_size, dtype=np.int64)
            chunk = 1 << 24
            for start in range(0, len(self.train), chunk):
                counts += np.bincount(self.train[start:start + chunk], minlength=self.vocab_size)
            self._counts = counts
        return self._counts

    def encode(self, text: str) -> list[int]:
        """Model-space ids of ``text`` (ids dropped by compaction become ``unk_id``)."""
        ids = self.tokenizer.encode(text)
        if self.vocab_map is None:
            return ids
        if self._to_model is None:
            self._to_model = self.vocab_map.tokenizer_to_model_table()
        return [int(i) for i in self._to_model[np.asarray(ids, dtype=np.int64)]]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of model-space ``ids``; the unknown id is rendered as ``<|unk|>``."""
        ids = [int(i) for i in ids]
        bad = next((i for i in ids if not 0 <= i < self.vocab_size), None)
        if bad is not None:
            raise ValueError(f"token id {bad} is out of range: ids must be in [0, {self.vocab_size})")
        if self.vocab_map is None:
            return self.tokenizer.decode(ids)
        pieces, run = [], []
        for i in ids:
            if i == self.vocab_map.unk_id:
                pieces.append(self.tokenizer.decode(run))
                pieces.append(UNK_TEXT)
                run = []
            else:
                run.append(int(self.vocab_map.model_to_tokenizer[i]))
        pieces.append(self.tokenizer.decode(run))
        return "".join(pieces)

    def __repr__(self) -> str:
        return (f"TokenData({str(self.path)!r}, tokenizer={self.tokenizer_name}, vocab_size={self.vocab_size}, "
                f"train={len(self.train)}, val={len(self.val)})")


def _build_hint(path: Path) -> str:
    return f"build it with `leviathan-explore data build --source python-stdlib --out {path}`"


def _open_split(path: Path, n_tokens: int) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; the data directory is incomplete: rebuild it")
    size = path.stat().st_size
    if size != 4 * n_tokens:
        raise ValueError(f"{path} has {size} bytes but the manifest says {n_tokens} tokens "
                         f"({4 * n_tokens} bytes): truncated or corrupt; rebuild the data")
    if n_tokens == 0:
        return np.zeros(0, dtype=np.uint32)
    return np.memmap(path, dtype=np.uint32, mode="r")


def read_manifest(data_dir: str | os.PathLike) -> dict:
    """The manifest of ``data_dir``; errors name the path and what a data directory holds."""
    path = Path(data_dir)
    if not path.exists():
        raise FileNotFoundError(f"data directory {path} does not exist; {_build_hint(path)}")
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is not a directory; a token data directory is expected ({_build_hint(path)})")
    manifest_path = path / MANIFEST_FILE
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{path} is not a token data directory: {MANIFEST_FILE} is missing "
                                f"(expected manifest.json, train.bin, val.bin); {_build_hint(path)}")
    try:
        manifest = read_json(manifest_path)
    except InvalidJsonError as exc:
        raise ValueError(f"{exc}; rebuild the data") from None
    if not isinstance(manifest, dict):
        raise ValueError(f"{manifest_path} is not a JSON object; rebuild the data")
    missing = [k for k in _REQUIRED_KEYS if k not in manifest]
    if missing:
        raise ValueError(f"{manifest_path} lacks {missing}; rebuild the data")
    return manifest


def load_token_data(data_dir: str | os.PathLike, *, expect_tokenizer: str | Tokenizer | None = None,
                    verify: bool = False) -> TokenData:
    """Open the shards of ``data_dir``, memory-mapped.

    Always checks that the file sizes match the manifest; ``verify=True`` also
    recomputes the sha256 content hash. ``expect_tokenizer`` (a name or a Tokenizer)
    raises ConfigError when the shards were made with a different tokenizer.
    """
    path = Path(data_dir)
    manifest = read_manifest(path)
    if expect_tokenizer is not None:
        expected = get_tokenizer(expect_tokenizer)
        if expected.name != manifest["tokenizer"] or expected.n_vocab != manifest["tokenizer_vocab_size"]:
            raise ConfigError("tokenizer", expected.name,
                              f"does not match the data in {path}, built with {manifest['tokenizer']} "
                              f"({manifest['tokenizer_vocab_size']} ids, this one has {expected.n_vocab}); "
                              f"use {manifest['tokenizer']} or rebuild the data")
    n_train, n_val = int(manifest["train_tokens"]), int(manifest["val_tokens"])
    if n_train == 0:
        raise ValueError(f"{path} holds no training tokens; {_build_hint(path)}")
    train = _open_split(path / SPLIT_FILES["train"], n_train)
    val = _open_split(path / SPLIT_FILES["val"], n_val)
    if verify:
        digest = _sha256_files([path / SPLIT_FILES["train"], path / SPLIT_FILES["val"]])
        if digest != manifest["content_hash"]:
            raise ValueError(f"{path}: the shards' sha256 {digest[:12]}... differs from the manifest's "
                             f"{str(manifest['content_hash'])[:12]}...: corrupt; rebuild the data")
    vocab_map = None
    if manifest["compact"] is not None:
        vmap_path = path / VOCAB_MAP_FILE
        if not vmap_path.is_file():
            raise FileNotFoundError(f"{vmap_path} is missing; compacted data needs its vocabulary map: rebuild the data")
        vocab_map = VocabMap.load(vmap_path)
        if vocab_map.vocab_size != manifest["vocab_size"] or vocab_map.tokenizer != manifest["tokenizer"]:
            raise ValueError(f"{vmap_path} ({vocab_map.vocab_size} ids, {vocab_map.tokenizer}) does not match "
                             f"{MANIFEST_FILE} ({manifest['vocab_size']} ids, {manifest['tokenizer']}); rebuild the data")
    return TokenData(path, manifest, train, val, vocab_map)


def describe_manifest(manifest: dict) -> str:
    """A few human-readable lines summarising a data manifest (for ``data info`` and ``data build``)."""
    docs = manifest.get("n_documents", {})
    vocab = f"{manifest['vocab_size']:,}"
    if manifest.get("compact") is not None:
        vocab += f" (compacted: {manifest['compact']:,} kept + unknown, of {manifest['tokenizer_vocab_size']:,})"
    skipped = manifest.get("skipped_documents", 0)
    reasons = manifest.get("skipped_reasons") or {}
    lines = [
        f"source      {manifest['source']}" + (f" {manifest['source_options']}" if manifest.get("source_options") else ""),
        f"tokenizer   {manifest['tokenizer']} (eot id {manifest['eot_id']})",
        f"vocabulary  {vocab}",
        f"tokens      {manifest['train_tokens']:,} train + {manifest['val_tokens']:,} val"
        + (" (budget reached)" if manifest.get("budget_reached") else ""),
        f"documents   {docs.get('train', 0):,} train + {docs.get('val', 0):,} val, {skipped:,} skipped"
        + (f" ({', '.join(f'{k}: {v}' for k, v in reasons.items())})" if reasons else ""),
        f"hash        sha256 {manifest['content_hash']}",
        f"made by     {manifest.get('created_by', '?')} (Python {manifest.get('python_version', '?')})",
    ]
    return "\n".join(lines)
