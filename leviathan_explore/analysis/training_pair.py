"""The notebooks' CPU-sized training pair: a dense model and its isoparametric Leviathan match.

Notebooks 03 and 04 (and the tests) share one corpus and one pair of runs, found from the
checkout's root (``project_root``), built and trained on first use (``ensure_corpus``,
``ensure_pair``) and only read back afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT_NAME = "leviathan-explore"


def project_root(start: str | Path | None = None) -> Path:
    """The checkout's root: the nearest directory at or above ``start`` (default: the working
    directory) whose ``pyproject.toml`` names this project.

    Notebooks run with their own folder as the working directory (JupyterLab and nbmake
    both do this), so shared folders such as ``runs/`` and ``data/shards/`` are found from here.
    Raises FileNotFoundError when no such directory exists.
    """
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        toml = folder / "pyproject.toml"
        if toml.is_file() and f'name = "{PROJECT_NAME}"' in toml.read_text(encoding="utf-8"):
            return folder
    raise FileNotFoundError(f"{here}: not inside a {PROJECT_NAME} checkout (no pyproject.toml naming it above)")


# ---- the trained pair of notebooks 03 and 04 ----------------------------------------------------

@dataclass(frozen=True)
class TutorialPair:
    """Where notebooks 03 and 04 keep their corpus and their dense + isoparametric Leviathan runs.

    corpus: ``data.build_corpus`` keyword arguments; train: ``training.compare`` keyword
    arguments (preset, steps and the other ``TrainConfig`` settings).
    """

    data_dir: Path
    runs_dir: Path
    corpus: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)

    @property
    def run_dirs(self) -> dict[str, Path]:
        """The two run directories ``training.compare`` writes: dense and leviathan."""
        return {"dense": self.runs_dir / "dense", "leviathan": self.runs_dir / "leviathan"}


def tutorial_pair(quick: bool, root: str | Path | None = None) -> TutorialPair:
    """The corpus and training settings of the notebooks' CPU-sized pair.

    Full mode: the catalog's ``python-stdlib-compact``, the whole Python standard library
    compacted to 4,096 ids (the directory ``leviathan-explore compare`` also uses by default),
    and 300 steps of ``cpu-tiny`` at 16 x 128 tokens. Quick mode (the tests): the catalog's
    ``python-stdlib-compact-1m``, its first million tokens, and 30 steps at 8 x 64 tokens, in
    separate folders so that a quick run never stands in for a full one.
    """
    from ..data.catalog import CORPORA

    root = project_root(root)
    mode = "quick" if quick else "full"
    spec = CORPORA["python-stdlib-compact-1m" if quick else "python-stdlib-compact"]
    corpus = dict(source=spec.source, compact=spec.compact, max_tokens=spec.max_tokens)
    data_dir = spec.path(root)
    train = dict(preset="cpu-tiny", steps=30 if quick else 300, batch_size=8 if quick else 16,
                 seq_len=64 if quick else 128, lr=3e-3, eval_every=10 if quick else 25,
                 eval_batches=2 if quick else 8, log_every=5 if quick else 10,
                 checkpoint_every=30 if quick else 100, seed=0, device="cpu")
    return TutorialPair(data_dir, root / "runs" / "notebooks" / mode / "cpu-tiny", corpus, train)


def ensure_corpus(data_dir: str | Path, *, source: str, compact: int | None, max_tokens: int | None,
                  progress: bool = True) -> dict:
    """The manifest of the corpus in ``data_dir``, building it first when the folder has none
    (``data.catalog.ensure_corpus`` with a spec of these settings, the catalog's tokenizer and
    validation share).

    An existing corpus is reused only if it was built from ``source`` with the same
    compaction and token budget; otherwise ValueError names the folder and the difference.
    """
    from ..data import read_manifest
    from ..data.catalog import CorpusSpec
    from ..data.catalog import ensure_corpus as ensure_catalogued

    data_dir = Path(data_dir)
    spec = CorpusSpec(data_dir.name, source, compact=compact, max_tokens=max_tokens)
    return read_manifest(ensure_catalogued(spec, path=data_dir, progress=progress))


def ensure_pair(pair: TutorialPair, progress: bool = True) -> list[dict]:
    """The summaries of the pair's dense and Leviathan runs, training whatever is missing.

    Builds the corpus if absent, then ``training.compare`` with ``resume=True``: finished
    runs are only read back, an interrupted one continues from its last checkpoint.
    """
    from ..training import compare

    ensure_corpus(pair.data_dir, progress=progress, **pair.corpus)
    return compare(data_dir=pair.data_dir, out_dir=pair.runs_dir, resume=True, progress=progress, **pair.train)
