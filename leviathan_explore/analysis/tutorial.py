"""Small computations the tutorial notebooks need that no other module provides.

The notebooks own no math (DESIGN.md): whatever they compute beyond calling the
library lives here, with a test in ``tests/test_tutorial_helpers.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..files import InvalidJsonError, read_json
from ..generator import LeviathanGenerator, bspline_basis
from ..training.runs import SELECTED
from .registry import load_curves
from .scaling import BeyondFittedRange, ScalingFitError, fit_power_law

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


def run_curves(run_dir: str | Path, x: str = "step") -> dict[str, list[float]]:
    """A run's train and validation losses for ``viz.training.loss_curves_figure``.

    x: "step" or "tokens". Returns {"train_x", "train_loss", "val_x", "val_loss"}.
    """
    if x not in ("step", "tokens"):
        raise ValueError(f"x={x!r} is invalid: must be 'step' or 'tokens'")
    df = load_curves(run_dir)
    train = df[df["type"] == "train"] if "loss" in df else df.iloc[0:0]
    val = df[df["type"] == "eval"] if "val_loss" in df else df.iloc[0:0]
    return {"train_x": train[x].tolist(), "train_loss": train["loss"].tolist() if len(train) else [],
            "val_x": val[x].tolist(), "val_loss": val["val_loss"].tolist() if len(val) else []}


def mode_factors(generator: LeviathanGenerator, u: torch.Tensor) -> torch.Tensor:
    """Stage 3 before the product: u [..., M, d_seed] -> phi [..., M, d_seed, r].

    ``phi[m, d, rho] = sum_g B_g(u[m, d]) * S_m[d, g, rho]`` with ``S = 1 + Delta``: the
    d_seed factors whose product over d is the mode feature ``Psi[m, rho]``
    (``generator.mode_features`` computes the product without returning the factors).
    """
    basis = bspline_basis(u, generator.cfg.n_knots)                  # [..., M, d, kappa]
    coeff = 1.0 + generator.spline_delta.detach().float()            # [M, d, kappa, r]
    return torch.einsum("...mdg,mdgr->...mdr", basis, coeff)


def fit_sensitivity(runs: pd.DataFrame, *, x: str = "total", kind: str = "saturating") -> pd.DataFrame:
    """How the dense law and each Leviathan multiplier change with the dense runs included.

    runs: a registry table (``registry.load_runs`` / ``load_for_fit``) with columns
    name, arch, ``x`` and final_val_loss. The law is refitted on all dense runs and
    then once without each dense run in turn (leave one out). Returns one row per
    (fit, Leviathan run) with columns fit ("all" or "without NAME"), omitted,
    n_points, E, A, alpha, run, n_params, loss, n_eff and multiplier (n_eff / n_params;
    NaN where the run's loss is at or below the fit's floor E, i.e. beyond the fitted
    range, or where that subset cannot be fitted: then ``error`` says why).
    """
    missing = sorted({"name", "arch", x, "final_val_loss"} - set(runs.columns))
    if missing:
        raise ValueError(f"runs table lacks column {missing[0]!r}: pass a registry.load_runs table")
    tied = runs["tied"].fillna(False).astype(bool) if "tied" in runs else pd.Series(False, index=runs.index)
    dense = runs[(runs["arch"] == "dense") & ~tied].sort_values(x)  # the law is the untied family's
    lev = runs[runs["arch"] != "dense"].sort_values(x)
    if len(dense) == 0:
        raise ScalingFitError("no dense runs: the dense law needs at least 3 dense runs of distinct sizes")
    subsets: list[tuple[str, str | None, pd.DataFrame]] = [("all", None, dense)]
    for name in dense["name"]:
        subsets.append((f"without {name}", name, dense[dense["name"] != name]))
    rows: list[dict[str, Any]] = []
    for label, omitted, part in subsets:
        base = dict(fit=label, omitted=omitted, n_points=len(part))
        try:
            law = fit_power_law(part[x].to_numpy(float), part["final_val_loss"].to_numpy(float),
                                kind=kind, x_name=x)
        except ScalingFitError as exc:
            law, base["error"] = None, str(exc)
        if law is not None:
            base.update(E=law.E, A=law.A, alpha=law.alpha, error=None)
        targets = lev.itertuples(index=False) if len(lev) else [None]
        for r in targets:
            row = dict(base)
            if r is not None:
                size, loss = float(getattr(r, x)), float(r.final_val_loss)
                row.update(run=r.name, n_params=int(size), loss=loss)
                n_eff = math.nan
                if law is not None:
                    try:
                        n_eff = law.invert(loss)
                    except BeyondFittedRange:
                        pass
                row.update(n_eff=n_eff, multiplier=n_eff / size)
            rows.append(row)
    columns = ["fit", "omitted", "n_points", "E", "A", "alpha", "run", "n_params", "loss", "n_eff",
               "multiplier", "error"]
    return pd.DataFrame(rows).reindex(columns=columns)


def multiplier_spread(sensitivity: pd.DataFrame) -> pd.DataFrame:
    """Per Leviathan run: the multiplier with all dense runs, and its range over the leave-one-out fits.

    sensitivity: the table of ``fit_sensitivity``. Columns run, all (multiplier with
    every dense run), loo_min, loo_max (over the fits that give a number) and
    loo_beyond (how many leave-one-out fits put the run beyond the fitted range or fail).
    """
    out = []
    for run, part in sensitivity.dropna(subset=["run"]).groupby("run", sort=False):
        full = part[part["fit"] == "all"]["multiplier"]
        loo = part[part["fit"] != "all"]["multiplier"].to_numpy(float)
        finite = loo[np.isfinite(loo)]
        out.append(dict(run=run, all=float(full.iloc[0]) if len(full) else math.nan,
                        loo_min=float(finite.min()) if finite.size else math.nan,
                        loo_max=float(finite.max()) if finite.size else math.nan,
                        loo_beyond=int(loo.size - finite.size)))
    return pd.DataFrame(out, columns=["run", "all", "loo_min", "loo_max", "loo_beyond"])


# ---- embedding geometry (notebook 04) ---------------------------------------------------------

def initial_model(run_dir: str | Path):
    """The ``TransformerLM`` of a run as it was before its first step.

    The trainer seeds ``torch.manual_seed(config["seed"])`` and then builds the model, so
    rebuilding it the same way (with the caller's random state left untouched) gives the
    exact initial weights: the "before" of a before/after comparison.
    """
    from ..config import ModelConfig
    from ..model import TransformerLM
    from ..training.runs import CONFIG, read_config

    cfg = read_config(run_dir)
    if "model_config" not in cfg or "seed" not in cfg:
        raise ValueError(f"{Path(run_dir) / CONFIG} lacks model_config or seed: not a training run")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(cfg["seed"]))
        model = TransformerLM(ModelConfig.from_dict(cfg["model_config"]))
    return model.eval()


def initial_source(trained, leviathan_run: str | Path, dense_run: str | Path | None = None):
    """``trained`` (an ``analysis.geometry.EmbeddingSource`` of a run pair) with the runs'
    initial weights instead of the trained ones; text, counts and ids are shared."""
    from dataclasses import replace

    generator = initial_model(leviathan_run).generator.eval()
    table = None
    if dense_run is not None:
        table = initial_model(dense_run).embed_tokens.weight.detach().float().numpy()

    def table_lookup(ids: np.ndarray) -> np.ndarray:
        if table is None:
            return np.full((len(ids), generator.d_model), np.nan, dtype=np.float32)
        return table[ids]

    return replace(trained, name=f"{trained.name} (initial)", generator=generator, table_lookup=table_lookup,
                   description=f"{trained.description}, at initialisation", _text_cache={})


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


# ---- the committed sweep (notebook 05) ----------------------------------------------------------

def lr_search_table(sweep_dir: str | Path) -> pd.DataFrame:
    """The learning-rate search of a sweep as a table: one row per (model, learning rate).

    Reads the sweep's ``selected.json`` (written by ``analysis.sweep.run_sweep``). Columns
    model, arch, lr, val_loss (NaN for a run that did not finish), status and selected
    (the learning rate the sweep chose for that model).
    """
    path = Path(sweep_dir) / SELECTED
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: {sweep_dir} is not a finished sweep directory")
    try:
        models = read_json(path)["models"]
    except (InvalidJsonError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a sweep selection ({type(exc).__name__}: {exc})") from None
    rows = []
    for model, entry in models.items():
        for cand in entry.get("candidates", []):
            loss = cand.get("val_loss")
            rows.append(dict(model=model, arch=entry.get("arch"), lr=float(cand["lr"]),
                             val_loss=math.nan if loss is None else float(loss), status=cand.get("status"),
                             selected=cand.get("run") == entry.get("run")))
    return pd.DataFrame(rows, columns=["model", "arch", "lr", "val_loss", "status", "selected"])
