"""The corpora this project names: one place that says which token directories exist by
default, how each is built, and builds a missing one on first use.

Every caller that needs "the default corpus" (the ``train``/``compare`` commands, the
dashboard's Train tab, the notebooks) asks ``ensure_corpus`` for it, so its directory,
source and compaction are written down once::

    path = ensure_corpus()                        # data/shards/python-stdlib-compact
    path = ensure_corpus("python-stdlib-16k")     # a named corpus of CORPORA
"""

from __future__ import annotations

import os
import shlex
import threading
from dataclasses import dataclass
from pathlib import Path

from ..config import ConfigError

DATA_ROOT = Path("data/shards")  # relative to the working directory, as the CLI's --data


@dataclass(frozen=True)
class CorpusSpec:
    """A named token directory: where it lives and the ``data build`` arguments that make it."""

    name: str                      # the directory name under DATA_ROOT
    source: str                    # a data.corpora source
    compact: int | None = None     # keep the K most frequent ids (+ one unknown id)
    max_tokens: int | None = None
    tokenizer: str = "o200k_base"
    val_fraction: float = 0.02
    about: str = ""

    def path(self, root: str | os.PathLike | None = None) -> Path:
        return (Path(root) / DATA_ROOT if root is not None else DATA_ROOT) / self.name

    def build_command(self, root: str | os.PathLike | None = None, out: str | os.PathLike | None = None) -> str:
        """The ``leviathan-explore data build`` command that makes it (into ``out`` if given)."""
        parts = ["leviathan-explore", "data", "build", "--source", self.source]
        if self.compact is not None:
            parts += ["--compact", str(self.compact)]
        if self.max_tokens is not None:
            parts += ["--max-tokens", str(self.max_tokens)]
        if self.tokenizer != "o200k_base":
            parts += ["--tokenizer", self.tokenizer]
        if self.val_fraction != 0.02:
            parts += ["--val-fraction", str(self.val_fraction)]
        return shlex.join(parts + ["--out", str(self.path(root) if out is None else out)])


CORPORA: dict[str, CorpusSpec] = {spec.name: spec for spec in (
    CorpusSpec("python-stdlib-compact", "python-stdlib", compact=4096,
               about="the embedded default: the Python standard library and its pydoc topics, the 4,096 most "
                     "frequent o200k ids kept (quick start, Train tab, notebooks)"),
    CorpusSpec("python-stdlib-compact-1m", "python-stdlib", compact=4096, max_tokens=1_000_000,
               about="the first million tokens of the embedded corpus, compacted on their own counts, for the "
                     "notebooks' quick mode (tests)"),
    # The laptop study (results/sweeps/laptop-study): one corpus, four kept vocabularies.
    CorpusSpec("python-stdlib-16k", "python-stdlib", compact=16384,
               about="the study's corpus: the 16,384 most frequent ids, a real rare tail"),
    CorpusSpec("python-stdlib-1k", "python-stdlib", compact=1024,
               about="1,024 ids (planned for the laptop study's regime map; dropped: no isoparametric match)"),
    CorpusSpec("python-stdlib-64k", "python-stdlib", compact=65536, about="the study's regime map, 65,536 ids"),
    CorpusSpec("python-docs-16k", "python-docs", compact=16384, val_fraction=0.05,
               about="the study's second corpus: English prose (pydoc topics and stdlib docstrings)"),
)}
DEFAULT_CORPUS = CORPORA["python-stdlib-compact"]

_BUILD_LOCK = threading.Lock()  # two dashboard sessions asking for one corpus build it once


def corpus_spec(name: str | CorpusSpec | dict) -> CorpusSpec:
    """A spec by name (``CORPORA``), or given as a CorpusSpec or as its fields (a study plan's JSON)."""
    if isinstance(name, CorpusSpec):
        return name
    if isinstance(name, dict):
        try:
            return CorpusSpec(**name)
        except TypeError as exc:
            raise ConfigError("corpus", name, f"is not a corpus spec ({exc})") from None
    if name not in CORPORA:
        raise ConfigError("corpus", name, f"must be one of {sorted(CORPORA)}")
    return CORPORA[name]


def _matches(manifest: dict, spec: CorpusSpec) -> str | None:
    """The first setting in which a built corpus differs from ``spec``, or None."""
    for key, value in (("source", spec.source), ("compact", spec.compact), ("max_tokens", spec.max_tokens),
                       ("tokenizer", spec.tokenizer), ("val_fraction", spec.val_fraction)):
        if manifest.get(key) != value:
            return f"{key}={manifest.get(key)!r}, not {value!r}"
    return None


def ensure_corpus(name: str | CorpusSpec = DEFAULT_CORPUS, *, root: str | os.PathLike | None = None,
                  path: str | os.PathLike | None = None, progress: bool = False, log=None) -> Path:
    """The directory of a named corpus, built first when it is absent.

    ``path``: that directory instead of the spec's own under ``root`` (a script's ``--data``).
    An existing directory is reused only if it was built with the spec's source,
    compaction, token budget and tokenizer; otherwise ValueError names the folder and
    the difference. Under ``torchrun`` (WORLD_SIZE > 1) a missing corpus is an error
    with the command that builds it, since ranks would race to build it.
    """
    from .shards import MANIFEST_FILE, build_corpus, read_manifest

    spec = corpus_spec(name)
    path = spec.path(root) if path is None else Path(path)
    with _BUILD_LOCK:
        if not (path / MANIFEST_FILE).is_file():
            if int(os.environ.get("WORLD_SIZE", "1")) > 1:
                raise FileNotFoundError(f"{path} does not exist; build it once before torchrun with "
                                        f"`{spec.build_command(out=path)}`, or pass --data")
            if log is not None:
                log(f"building the corpus {spec.name} in {path} ({spec.about or spec.source}); this happens once")
            build_corpus(spec.source, path, tokenizer=spec.tokenizer, compact=spec.compact,
                         max_tokens=spec.max_tokens, val_fraction=spec.val_fraction, progress=progress,
                         created_by=spec.build_command(out=path))
            return path
    diff = _matches(read_manifest(path), spec)
    if diff:
        raise ValueError(f"{path} holds a corpus with {diff}: remove the folder to rebuild it, or choose "
                         f"another folder")
    return path
