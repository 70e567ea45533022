"""Where documents come from: each source is an iterator of document texts.

- ``python-stdlib``: the embedded default. The ``.py`` files of the running Python's
  standard library (``sysconfig.get_paths()["stdlib"]``, without ``site-packages``)
  and the prose of ``pydoc_data.topics``: always present, offline, deterministic for
  a Python installation, a mix of code and English like the Pile's code and docs.
- ``files``: local ``.txt`` (one document a file), ``.jsonl`` (a ``"text"`` field a
  line) or ``.parquet`` (a ``text`` column) files matched by one or more globs.
- ``hf``: a Hugging Face ``datasets`` dataset, streamed through the paper's
  10,000-document shuffle buffer (default: the uncopyrighted Pile).
- ``site-packages``: ``.py``, ``.md``, ``.rst`` and ``.txt`` files of the installed
  packages, a larger offline corpus.
- ``python-docs``: English prose only, no code: the ``pydoc`` topics and every docstring
  of the standard library of at least ``PROSE_MIN_CHARS`` characters (one document each),
  the offline stand-in for a prose corpus (about 0.6M ``o200k`` tokens with Python 3.11).

File lists are sorted, then shuffled with the build seed, so that a token budget
takes a sample of the whole corpus rather than its alphabetical beginning. Text that
is not valid UTF-8 is never fatal: the document is skipped and counted under a
reason in the ``skipped`` counter the caller passes in.
"""

from __future__ import annotations

import glob as globlib
import itertools
import json
import os
import random
import site
import socket
import sysconfig
import threading
from collections import Counter
from pathlib import Path
from typing import Iterable, Iterator, Sequence
from urllib.parse import urlparse

from ..config import ConfigError

SOURCES = ("python-stdlib", "files", "hf", "site-packages", "python-docs")
OFFLINE_SOURCES = ("python-stdlib", "files", "site-packages", "python-docs")
PROSE_MIN_CHARS = 80  # shorter docstrings are mostly "Return x." fragments
DEFAULT_HF_DATASET = "monology/pile-uncopyrighted"
HF_SHUFFLE_BUFFER = 10_000  # the paper's streaming shuffle buffer, in documents
FILE_SUFFIXES = (".txt", ".jsonl", ".parquet")
SITE_PACKAGES_SUFFIXES = (".py", ".md", ".rst", ".txt")
_HUB_TIMEOUT_S = 5.0


class CorpusUnavailable(ValueError):
    """A corpus cannot be read (no network for ``hf``, a dataset without text...)."""


def decode_utf8(raw: bytes, skipped: Counter) -> str | None:
    """``raw`` as text (a leading BOM dropped), or None, counted, when it is not valid UTF-8 or empty."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        skipped["non_utf8"] += 1
        return None
    if not text:
        skipped["empty"] += 1
        return None
    return text


def _shuffled(paths: Sequence[Path], seed: int) -> list[Path]:
    ordered = sorted(paths, key=lambda p: p.as_posix())
    random.Random(seed).shuffle(ordered)
    return ordered


def _read_files(paths: Sequence[Path], skipped: Counter) -> Iterator[str]:
    for path in paths:
        try:
            raw = path.read_bytes()
        except OSError:
            skipped["unreadable"] += 1
            continue
        text = decode_utf8(raw, skipped)
        if text is not None:
            yield text


# ---- python-stdlib --------------------------------------------------------------------------

def stdlib_paths() -> list[Path]:
    """The standard library's ``.py`` files, sorted; ``site-packages``/``dist-packages`` excluded."""
    root = sysconfig.get_paths()["stdlib"]
    excluded = {"site-packages", "dist-packages", "__pycache__"}
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in excluded]
        found += [Path(dirpath) / name for name in filenames if name.endswith(".py")]
    return sorted(found, key=lambda p: p.as_posix())


def pydoc_topics() -> list[str]:
    """The prose of ``pydoc_data.topics`` (the language reference behind ``help()``), sorted by topic."""
    try:
        from pydoc_data.topics import topics
    except ImportError:  # some distributions strip pydoc_data
        return []
    return [topics[key] for key in sorted(topics)]


def stdlib_documents(seed: int, skipped: Counter) -> Iterator[str]:
    """Stdlib source files and pydoc topics, interleaved in a seeded order."""
    items: list[Path | str] = list(stdlib_paths()) + pydoc_topics()
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    for i in order:
        item = items[i]
        if isinstance(item, str):
            yield item
        else:
            yield from _read_files([item], skipped)


def file_docstrings(path: Path, skipped: Counter) -> list[str]:
    """Docstrings of a module's module, classes and functions of at least PROSE_MIN_CHARS (``ast``, no import)."""
    import ast
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escape sequences in old test files
            tree = ast.parse(path.read_bytes())
    except (SyntaxError, ValueError, OSError):
        skipped["unparsable"] += 1
        return []
    docs = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node)
            if doc and len(doc) >= PROSE_MIN_CHARS:
                docs.append(doc)
    return docs


def prose_documents(seed: int, skipped: Counter) -> Iterator[str]:
    """The pydoc topics and the stdlib files' docstrings, files and topics in a seeded order
    (lazily: a token budget parses only the files it needs)."""
    items: list[Path | str] = list(stdlib_paths()) + pydoc_topics()
    random.Random(seed).shuffle(items)
    for item in items:
        yield from ([item] if isinstance(item, str) else file_docstrings(item, skipped))


# ---- files ----------------------------------------------------------------------------------

def expand_globs(patterns: Sequence[str] | str | None) -> list[Path]:
    """The files matched by ``patterns`` (``**`` recurses), sorted; errors name the bad pattern."""
    if patterns is None or (not isinstance(patterns, str) and len(patterns) == 0):
        raise ConfigError("glob", None, "a pattern is required for --source files, e.g. --glob 'texts/**/*.txt'")
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    found: set[Path] = set()
    for pattern in patterns:
        matched = [Path(p) for p in globlib.glob(os.path.expanduser(pattern), recursive=True)]
        matched = [p for p in matched if p.is_file()]
        if not matched:
            raise ConfigError("glob", pattern, "matches no files")
        for path in matched:
            if path.suffix.lower() not in FILE_SUFFIXES:
                raise ConfigError("glob", pattern, f"matches {path}, whose type is not one of {list(FILE_SUFFIXES)}")
        found.update(matched)
    return sorted(found, key=lambda p: p.as_posix())


def _texts(values: Iterable[object], skipped: Counter) -> Iterator[str]:
    """The non-empty strings among ``values`` (a record's ``text``); the others counted as
    ``no_text`` (missing, or not a string) or ``empty``."""
    for text in values:
        if not isinstance(text, str):
            skipped["no_text"] += 1
        elif not text:
            skipped["empty"] += 1
        else:
            yield text


def _jsonl_text_fields(path: Path, skipped: Counter) -> Iterator[object]:
    """The ``text`` field of each JSON line (None when a record has none); undecodable lines counted."""
    with open(path, "rb") as fh:
        for line in fh:
            if not line.strip():
                continue
            text_line = decode_utf8(line, skipped)
            if text_line is None:
                continue
            try:
                record = json.loads(text_line)
            except json.JSONDecodeError:
                skipped["bad_json"] += 1
                continue
            yield record.get("text") if isinstance(record, dict) else None


def _parquet_documents(path: Path, skipped: Counter) -> Iterator[str]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    if "text" not in pf.schema_arrow.names:
        raise CorpusUnavailable(f"{path} has no 'text' column (columns: {pf.schema_arrow.names})")
    for batch in pf.iter_batches(columns=["text"], batch_size=1024):
        yield from _texts(batch.column(0).to_pylist(), skipped)


def file_documents(patterns: Sequence[str] | str, seed: int, skipped: Counter) -> Iterator[str]:
    """Documents of the ``.txt``/``.jsonl``/``.parquet`` files matched by ``patterns``."""
    for path in _shuffled(expand_globs(patterns), seed):
        suffix = path.suffix.lower()
        if suffix == ".jsonl":
            yield from _texts(_jsonl_text_fields(path, skipped), skipped)
        elif suffix == ".parquet":
            yield from _parquet_documents(path, skipped)
        else:
            yield from _read_files([path], skipped)


# ---- site-packages --------------------------------------------------------------------------

def site_packages_dirs() -> list[Path]:
    """Existing site-packages directories of this interpreter (venv and user), deduplicated."""
    candidates = list(getattr(site, "getsitepackages", lambda: [])())
    user = getattr(site, "getusersitepackages", lambda: None)()
    if isinstance(user, str):
        candidates.append(user)
    paths = sysconfig.get_paths()
    candidates += [paths["purelib"], paths["platlib"]]
    seen: dict[Path, None] = {}
    for c in candidates:
        p = Path(c)
        if p.is_dir():
            seen.setdefault(p.resolve(), None)
    return sorted(seen, key=lambda p: p.as_posix())


def site_packages_paths() -> list[Path]:
    """``.py``/``.md``/``.rst``/``.txt`` files under the site-packages dirs, without metadata folders."""
    found: set[Path] = set()
    for root in site_packages_dirs():
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames
                           if d != "__pycache__" and not d.endswith((".dist-info", ".egg-info"))]
            for name in filenames:
                if name.lower().endswith(SITE_PACKAGES_SUFFIXES):
                    found.add(Path(dirpath) / name)
    return sorted(found, key=lambda p: p.as_posix())


def site_packages_documents(seed: int, skipped: Counter) -> Iterator[str]:
    return _read_files(_shuffled(site_packages_paths(), seed), skipped)


# ---- hf ---------------------------------------------------------------------------------------

def _offline_hint() -> str:
    return f"offline sources: {', '.join(OFFLINE_SOURCES)}"


def _hub_reachable(timeout: float = _HUB_TIMEOUT_S) -> str | None:
    """None when the Hub's host accepts a TCP connection within ``timeout``, else the reason."""
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    parsed = urlparse(endpoint)
    host = parsed.hostname or "huggingface.co"
    port = parsed.port or (80 if parsed.scheme == "http" else 443)
    outcome: list[str | None] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as exc:
            outcome.append(f"{host}:{port} unreachable: {exc.strerror or exc}")

    # A thread, because the connect timeout does not bound the DNS look-up before it.
    worker = threading.Thread(target=probe, daemon=True)
    worker.start()
    worker.join(timeout)
    return outcome[0] if outcome else f"{host}:{port} gave no answer within {timeout:g} s"


def hf_documents(dataset: str | None, seed: int, skipped: Counter,
                 shuffle_buffer: int = HF_SHUFFLE_BUFFER) -> Iterator[str]:
    """Open and stream ``dataset``'s ``train`` split through a seeded shuffle buffer, yielding ``text``.

    With no network this fails within a few seconds (a TCP probe of the Hub, instead of
    ``datasets``' minute of retries) with a message that names the offline sources. A
    local dataset folder, or ``HF_HUB_OFFLINE=1`` with a cached copy, skips the probe.
    """
    name = dataset or DEFAULT_HF_DATASET
    local = Path(os.path.expanduser(name)).exists()
    offline_mode = any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on")
                       for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    behind_proxy = any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"))
    if not local and not offline_mode and not behind_proxy:
        reason = _hub_reachable()
        if reason:
            raise CorpusUnavailable(f"cannot stream dataset {name!r}: the Hugging Face Hub is not reachable "
                                    f"({reason}); {_offline_hint()}")
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", str(int(_HUB_TIMEOUT_S)))
    try:
        import datasets

        stream = datasets.load_dataset(os.path.expanduser(name) if local else name, split="train", streaming=True)
        stream = stream.shuffle(seed=seed, buffer_size=shuffle_buffer)
        rows = iter(stream)
        first = next(rows, None)
    except (ConnectionError, OSError, TimeoutError) as exc:
        first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise CorpusUnavailable(f"cannot stream dataset {name!r}: {first_line}; {_offline_hint()}") from None
    except ValueError as exc:  # datasets' "unknown split" / bad config errors
        first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise CorpusUnavailable(f"cannot stream dataset {name!r}: {first_line}") from None
    if first is None:
        return iter(())
    if "text" not in first:
        raise CorpusUnavailable(f"dataset {name!r} has no 'text' field (fields: {sorted(first)})")
    return _hf_texts(name, first, rows, skipped)


def _hf_texts(name: str, first: dict, rows: Iterator[dict], skipped: Counter) -> Iterator[str]:
    try:
        yield from _texts((row.get("text") for row in itertools.chain([first], rows)), skipped)
    except (ConnectionError, OSError, TimeoutError) as exc:  # the connection dropped mid-stream
        first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise CorpusUnavailable(f"streaming dataset {name!r} failed: {first_line}; {_offline_hint()}") from None


# ---- dispatch ---------------------------------------------------------------------------------

def iter_documents(source: str, *, seed: int = 0, glob: Sequence[str] | str | None = None,
                   dataset: str | None = None, skipped: Counter | None = None) -> Iterator[str]:
    """Documents of ``source`` (one of ``SOURCES``); skipped documents are counted in ``skipped``."""
    skipped = Counter() if skipped is None else skipped
    if source == "python-stdlib":
        return stdlib_documents(seed, skipped)
    if source == "files":
        expand_globs(glob)  # raise a bad pattern now, not at the first next()
        return file_documents(glob, seed, skipped)
    if source == "hf":
        return hf_documents(dataset, seed, skipped)
    if source == "site-packages":
        return site_packages_documents(seed, skipped)
    if source == "python-docs":
        return prose_documents(seed, skipped)
    raise ConfigError("source", source, f"must be one of {list(SOURCES)}")
