"""A study: several sweeps run in order from one plan (``study.json``), some of whose learning
rates are fixed by rules that read earlier sweeps' choices.

Plan format (JSON)::

    {
      "name": "laptop-study", "description": "...",
      "preset": "cpu-16k",                    # default preset of every sweep
      "train": {...},                         # TrainConfig fields shared by every sweep (a grid's "train")
      "quick": {...},                         # how --quick shrinks the plan (see quick_plan)
      "sweeps": [
        {"name": "main", "corpus": "python-stdlib-16k", "seed": 0,
         "lr_grid": [...], "lr_extend": 1,
         "lr_endpoints": ["d32", "d128"],     # sizes searched on a grid; the others are interpolated
         "sizes": [ {"name": "d32", "model": {...}, "leviathan": [...]},          # a grid's sizes, plus
                    {"name": "d64", "model": {...}, "lr_rule": "interpolate"},   # lr from the endpoints
                    ... ]},
        {"name": "seed1", "corpus": "python-stdlib-16k", "seed": 1,
         "sizes": [{"name": "d32", "model": {...}, "lr_rule": {"from": "main"}}]},   # main's choice, same size
        {"name": "long", "train": {"tokens": ...}, ...}
      ]
    }

``lr_rule: "interpolate"``: each model of the size gets the learning rate interpolated
geometrically, in log total parameters, between the choices for the same kind of model
(``dense``, ``lev-isoparam-depth``, ``dense-tied``, ``lev-backbone``) at the sweep's two
``lr_endpoints``. ``lr_rule: {"from": SWEEP, "size": SIZE, "kind": KIND}``: the choice for the same kind
of model (or for KIND) at SIZE (default: the same size name) in an earlier sweep; SWEEP may be
a path relative to the study directory, to reuse another study's choices. Sizes whose rule needs
choices not made yet run in a second phase, after the endpoints of the same sweep.

Layout: ``DIR/study.json``, ``DIR/<sweep>/`` (sweep directories), ``DIR/report.json`` and the
Markdown of ``format_report``. Every piece is resumable: finished runs are never redone.
"""

from __future__ import annotations

import copy
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

from ..config import ConfigError, read_settings_file
from ..files import read_json_or_none, write_json_atomic
from ..params import count_params
from ..training.runs import SELECTED, STUDY_FILE, SUMMARY, SWEEP_RUNS

SWEEP_KEYS = {"name", "corpus", "seed", "train", "lr_grid", "lr_extend", "lr_endpoints", "sizes", "preset",
              "description"}


def load_plan(study_dir: str | Path) -> dict[str, Any]:
    plan = read_settings_file(Path(study_dir) / STUDY_FILE, "study",
                              f"no such study plan (a study directory holds {STUDY_FILE})")
    check_plan(plan)
    return plan


def check_plan(plan: dict[str, Any]) -> None:
    if not isinstance(plan, dict) or not isinstance(plan.get("sweeps"), list) or not plan["sweeps"]:
        raise ConfigError("study.sweeps", plan.get("sweeps") if isinstance(plan, dict) else plan,
                          "must be a non-empty list of sweeps")
    names = []
    for i, sw in enumerate(plan["sweeps"]):
        if not isinstance(sw, dict):
            raise ConfigError(f"study.sweeps[{i}]", sw, "must be an object")
        unknown = sorted(set(sw) - SWEEP_KEYS)
        if unknown:
            raise ConfigError(f"study.sweeps[{i}].{unknown[0]}", sw[unknown[0]], f"allowed: {sorted(SWEEP_KEYS)}")
        if not isinstance(sw.get("name"), str) or not sw["name"] or "/" in sw["name"]:
            raise ConfigError(f"study.sweeps[{i}].name", sw.get("name"), "must be a name without '/'")
        names.append(sw["name"])
        for size in sw.get("sizes", []):
            rule = size.get("lr_rule")
            if rule is None:
                continue
            if rule == "interpolate":
                if len(sw.get("lr_endpoints") or []) != 2:
                    raise ConfigError(f"study.sweeps[{i}].lr_endpoints", sw.get("lr_endpoints"),
                                      "must name two sizes for lr_rule 'interpolate'")
            elif not (isinstance(rule, dict) and (rule.get("from") in names[:-1] or
                                                  "/" in str(rule.get("from", "")))):
                raise ConfigError(f"study.sweeps[{i}].sizes.{size.get('name')}.lr_rule", rule,
                                  "must be 'interpolate' or {\"from\": an earlier sweep (or a path to a "
                                  "sweep of another study), \"size\": ..., \"kind\": ...}")
    if len(set(names)) != len(names):
        raise ConfigError("study.sweeps", names, "sweep names must be unique")


# ---- learning-rate rules -------------------------------------------------------------------------

def model_kind(key: str, size: str) -> str:
    """'d64-lev-isoparam-depth' of size 'd64' -> 'lev-isoparam-depth'."""
    return key[len(size) + 1:]


def _selected(study_dir: Path, sweep: str) -> dict[str, Any]:
    """The models a sweep has chosen so far ({} while it has not started, or mid-write)."""
    selected = read_json_or_none(study_dir / sweep / SELECTED)
    return selected.get("models", {}) if selected is not None else {}


def _grid_of(plan: dict[str, Any], sw: dict[str, Any], sizes: list[dict[str, Any]]) -> dict[str, Any]:
    train = {**plan.get("train", {}), **sw.get("train", {})}
    grid = {"name": f"{plan.get('name', 'study')}/{sw['name']}", "preset": sw.get("preset", plan.get("preset")),
            "seed": sw.get("seed", 0), "train": train, "lr_grid": sw.get("lr_grid") or [1e-3],
            "lr_extend": sw.get("lr_extend", 0), "sizes": sizes}
    if sw.get("description"):
        grid["description"] = sw["description"]
    return {k: v for k, v in grid.items() if v is not None}


def _total_params(grid: dict[str, Any], size_name: str, kind: str, vocab_size: int) -> int:
    from .sweep import parse_grid
    from ..training.trainer import build_model_config
    from .sweep import run_config

    g = parse_grid(grid)
    for m in g.models:
        if m.size == size_name and model_kind(m.key, m.size) == kind:
            return count_params(build_model_config(run_config(g, m, m.lr_grid[0], "", ""), vocab_size)).total
    raise KeyError(f"{size_name}-{kind}")


def resolve_sweep(plan: dict[str, Any], sw: dict[str, Any], study_dir: Path, vocab_size: int,
                  ) -> tuple[list[dict[str, Any]], list[str]]:
    """The sweep's sizes with every ``lr_rule`` turned into a one-value ``lr_grid`` where its inputs
    exist; returns (sizes ready to run, names of sizes still waiting for choices)."""
    ready, waiting = [], []
    endpoints = sw.get("lr_endpoints") or []
    for size in sw.get("sizes", []):
        rule = size.get("lr_rule")
        clean = {k: v for k, v in size.items() if k != "lr_rule"}
        if rule is None:
            ready.append(clean)
            continue
        probe = _grid_of(plan, sw, [{**clean, "lr_grid": [1e-3]}])
        from .sweep import parse_grid
        kinds = [model_kind(m.key, m.size) for m in parse_grid(probe).models]
        if rule == "interpolate":
            chosen = _selected(study_dir, sw["name"])
            lo, hi = endpoints
            lrs = {}
            for kind in kinds:
                a, b = chosen.get(f"{lo}-{kind}"), chosen.get(f"{hi}-{kind}")
                if not a or not b:
                    break
                ends = [s for s in sw["sizes"] if s["name"] in (lo, hi)]
                g_ends = _grid_of(plan, sw, [{**{k: v for k, v in s.items() if k != "lr_rule"}, "lr_grid": [1e-3]}
                                             for s in ends])
                n_lo, n_hi = (_total_params(g_ends, e, kind, vocab_size) for e in (lo, hi))
                n = _total_params(probe, size["name"], kind, vocab_size)
                t = 0.0 if n_hi == n_lo else (math.log(n) - math.log(n_lo)) / (math.log(n_hi) - math.log(n_lo))
                lrs[kind] = math.exp(math.log(a["lr"]) + t * (math.log(b["lr"]) - math.log(a["lr"])))
        else:
            chosen = _selected(study_dir, rule["from"])  # a path ("../other-study/main") works too
            src = rule.get("size", size["name"])
            # "kind": every model of the size takes that kind's choice (an ablation takes Leviathan's)
            lrs = {kind: chosen[f"{src}-{rule.get('kind', kind)}"]["lr"] for kind in kinds
                   if f"{src}-{rule.get('kind', kind)}" in chosen}
        if set(lrs) != set(kinds):
            waiting.append(size["name"])
            continue
        ready.append(_with_lrs(clean, lrs))
    return ready, waiting


def _with_lrs(size: dict[str, Any], lrs: dict[str, float]) -> dict[str, Any]:
    """A size whose models each get their own one-value lr_grid."""
    out = copy.deepcopy(size)
    r = lambda v: [float(f"{v:.3g}")]  # noqa: E731 - the run name shows 3 significant digits
    out["lr_grid"] = r(lrs["dense"]) if "dense" in lrs else r(next(iter(lrs.values())))
    from .sweep import variant_kind

    for var in out.get("leviathan", []):
        kind = variant_kind(var)
        if kind in lrs:
            var["lr_grid"] = r(lrs[kind])
    if "dense-tied" in lrs:
        out["lr_grid_tied"] = r(lrs["dense-tied"])
    return out


# ---- the quick form (CI) -----------------------------------------------------------------------

def quick_plan(plan: dict[str, Any]) -> dict[str, Any]:
    """The same sweeps, sizes, variants and learning-rate rules, shrunk to run in about a minute:
    ``plan["quick"]`` gives the train settings, a divisor of every width (one head each), a small
    generator, a token budget for the corpora (each a ``-quick`` copy of its spec) and ``lr_extend``.
    """
    from ..data.catalog import corpus_spec
    from dataclasses import asdict, replace as dc_replace

    q = dict(plan.get("quick") or {})
    div = int(q.pop("d_model_divisor", 8))
    generator = q.pop("generator", None)
    max_tokens = q.pop("max_tokens", 100_000)
    lr_extend = q.pop("lr_extend", 0)
    out = copy.deepcopy(plan)
    out["name"] = f"{plan.get('name', 'study')}-quick"

    def quick_path(path: str) -> str:  # another study's sweep: its quick form, next to this one's
        parts = path.split("/")
        return "/".join(f"{p}-quick" if i == len(parts) - 2 and p not in ("..", ".") else p
                        for i, p in enumerate(parts))

    if out.get("reference_sweeps"):
        out["reference_sweeps"] = [quick_path(p) for p in out["reference_sweeps"]]
    base_tokens = int(plan.get("train", {}).get("tokens", 0)) or 1
    out["train"] = {**plan.get("train", {}), **q}
    for sw in out["sweeps"]:
        spec = corpus_spec(sw["corpus"])
        # vocabularies keep their order (the regime map) but shrink to a quarter (at least 512)
        compact = None if spec.compact is None else max(512, spec.compact // 4)
        sw["corpus"] = asdict(dc_replace(spec, name=f"{spec.name}-quick", compact=compact, max_tokens=max_tokens))
        sw["lr_extend"] = min(lr_extend, sw.get("lr_extend", 0))
        if "tokens" in sw.get("train", {}):  # a longer sweep stays proportionally longer
            sw["train"] = {**sw["train"], "tokens": int(q.get("tokens", base_tokens) * sw["train"]["tokens"]
                                                          / base_tokens)}
            sw["train"].pop("eval_every", None)
        for size in sw.get("sizes", []):
            rule = size.get("lr_rule")
            if isinstance(rule, dict) and "/" in str(rule.get("from", "")):
                size["lr_rule"] = {**rule, "from": quick_path(rule["from"])}
            m = dict(size.get("model", {}))
            if "d_model" in m:
                m["d_model"] = max(4, m["d_model"] // div)
                m["n_heads"] = 1
            if generator:
                m["leviathan"] = {**m.get("leviathan", {}), **generator}
            size["model"] = m
    return out


# ---- running ----------------------------------------------------------------------------------

def prepare_quick(study_dir: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """Write the quick form of ``study_dir``'s plan to ``out_dir/study.json`` (same sweeps, tiny sizes)."""
    plan = quick_plan(load_plan(study_dir))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / STUDY_FILE, plan)
    return plan


class StudyWorkerFailed(RuntimeError):
    """A worker process of ``run_study(workers > 1)`` exited with an error (it printed why)."""


def run_study(study_dir: str | Path, *, workers: int = 2, plan: dict[str, Any] | None = None,
              data_root: str | Path | None = None, log: Callable[[str], None] = print,
              only: list[str] | None = None) -> None:
    """Run (or resume) every sweep of the plan.

    ``workers == 1``: the sweeps in order, in this process. ``workers > 1``: that many processes
    (one torch thread each), each walking the whole plan (``walk_study``): a worker trains
    whichever model no other has claimed and moves on to the next sweep when nothing of this one
    is left, so no core idles at a sweep's tail. ``data_root``: where named corpora are built
    (default: the working directory's data/shards).
    """
    from .sweep import run_sweep

    study_dir = Path(study_dir)
    plan = plan or load_plan(study_dir)
    if workers > 1:
        for sw in plan["sweeps"]:  # every corpus built here, once, before the workers start
            if not only or sw["name"] in only:
                _sweep_data(sw, data_root, log)
        _walk_in_processes(study_dir, workers, data_root, only)
        return
    for sw in plan["sweeps"]:
        if only and sw["name"] not in only:
            continue
        data_dir, vocab = _sweep_data(sw, data_root, log)
        for phase in (1, 2):
            sizes, waiting = resolve_sweep(plan, sw, study_dir, vocab)
            if not sizes:
                raise ConfigError(f"study.sweeps.{sw['name']}", waiting, "no size can run: its learning-rate "
                                  "rules need choices that no earlier sweep made")
            log(f"study {plan.get('name')}: sweep {sw['name']} phase {phase}: {len(sizes)} size(s)"
                + (f", waiting: {', '.join(waiting)}" if waiting else ""))
            run_sweep(_grid_of(plan, sw, sizes), data_dir, study_dir / sw["name"], progress=False)
            if not waiting:
                break
        else:
            raise ConfigError(f"study.sweeps.{sw['name']}", waiting, "still waiting after its endpoints ran")


def _sweep_data(sw: dict[str, Any], data_root: str | Path | None, log: Callable[[str], None]) -> tuple[Path, int]:
    from ..data.catalog import corpus_spec, ensure_corpus
    from ..data.shards import read_manifest

    data_dir = ensure_corpus(corpus_spec(sw["corpus"]), root=data_root, log=log)
    return data_dir, int(read_manifest(data_dir)["vocab_size"])


def _live_claims(study_dir: Path, plan: dict[str, Any]) -> list[str]:
    """Models of the plan that a live process other than this one is training now."""
    from .sweep import live_claims

    return [f"{sw['name']}/{key}" for sw in plan["sweeps"] for key in live_claims(study_dir / sw["name"])]


def walk_study(study_dir: str | Path, *, plan: dict[str, Any] | None = None, data_root: str | Path | None = None,
               log: Callable[[str], None] = print, only: list[str] | None = None, poll_s: float = 15.0,
               train_fn: Callable[[Any], dict] | None = None) -> None:
    """One of several claim workers over the whole plan (``run_study(workers > 1)`` starts them).

    Passes over the sweeps in order; in each, trains every ready model no live process has
    claimed (``run_sweep(claim=True)``). A size whose learning-rate rule waits on a choice
    another worker is still making is revisited after ``poll_s`` seconds; when a choice can
    never come (nothing waited on is being trained by anyone), it stops with the error
    ``run_study`` gives. Returns when no size of the plan waits.
    """
    from .sweep import run_sweep

    study_dir = Path(study_dir)
    plan = plan or load_plan(study_dir)
    data: dict[str, tuple[Path, int]] = {}
    seen: set[tuple[str, int]] = set()
    idle_passes = 0
    while True:
        waiting_any: dict[str, list[str]] = {}
        for sw in plan["sweeps"]:
            if only and sw["name"] not in only:
                continue
            if sw["name"] not in data:
                data[sw["name"]] = _sweep_data(sw, data_root, log)
            data_dir, vocab = data[sw["name"]]
            for _phase in (1, 2):  # a size interpolated between this sweep's endpoints runs after them
                sizes, waiting = resolve_sweep(plan, sw, study_dir, vocab)
                if sizes:
                    if (sw["name"], len(sizes)) not in seen:  # said once, not at every pass
                        seen.add((sw["name"], len(sizes)))
                        log(f"study {plan.get('name')} (worker {os.getpid()}): sweep {sw['name']}: "
                            f"{len(sizes)} size(s)" + (f", waiting: {', '.join(waiting)}" if waiting else ""))
                    run_sweep(_grid_of(plan, sw, sizes), data_dir, study_dir / sw["name"], progress=False,
                              claim=True, train_fn=train_fn)
                if not waiting or not sizes:
                    break
            if waiting:
                waiting_any[sw["name"]] = waiting
        if not waiting_any:
            return
        # the choices waited on come from models other workers train now; none: they never will
        # (two passes in a row, since a worker that just finished releases its claim after choosing)
        idle_passes = 0 if _live_claims(study_dir, plan) else idle_passes + 1
        if idle_passes >= 2:
            name, sizes = next(iter(waiting_any.items()))
            raise ConfigError(f"study.sweeps.{name}", sizes, "no size can run: its learning-rate rules need "
                              "choices that no earlier sweep made")
        if idle_passes == 0:
            log(f"study {plan.get('name')}: waiting for " + "; ".join(f"{k} ({', '.join(v)})"
                                                                   for k, v in waiting_any.items()))
            time.sleep(poll_s)


def _walk_in_processes(study_dir: Path, workers: int, data_root: str | Path | None, only: list[str] | None) -> None:
    """``workers`` processes of ``study run DIR --walk`` (one torch thread each); waits for all."""
    from .sweep import SweepStopped, wait_for_workers

    argv = [sys.executable, "-m", "leviathan_explore.cli", "study", "run", str(study_dir), "--walk"]
    argv += ["--data-root", str(data_root)] if data_root is not None else []
    for name in only or []:
        argv += ["--only", name]
    try:
        codes = wait_for_workers([argv] * workers, env={**os.environ, "OMP_NUM_THREADS": "1"})
    except KeyboardInterrupt:
        raise SweepStopped(f"study {study_dir} was interrupted; rerun the same command to resume it") from None
    if 130 in codes:
        raise SweepStopped(f"study {study_dir} was interrupted; rerun the same command to resume it")
    bad = [c for c in codes if c != 0]
    if bad:
        raise StudyWorkerFailed(f"a worker of study {study_dir} failed (exit {bad[0]}); its message is above. "
                                "Runs that finished are kept: rerun the same command to resume")


# ---- the report -------------------------------------------------------------------------------

BUCKET_NAMES = ("frequent", "medium", "rare")


def _runs_of(study_dir: Path, sweep: str) -> dict[str, dict[str, Any]]:
    """model key -> registry row (plus ``run_dir`` and the model's lr choice) of a sweep's selected runs."""
    from .registry import summary_row

    out = {}
    for key, m in _selected(study_dir, sweep).items():
        run = study_dir / sweep / SWEEP_RUNS / m["run"]
        if (run / SUMMARY).is_file():
            out[key] = {**summary_row(run), "size": m.get("size"), "lr_searched": m.get("lr_searched"),
                        "lr_at_edge": m.get("lr_at_edge"), "candidates": m.get("candidates")}
    return out


def _gap(lev: dict | None, ref: dict | None, col: str = "final_val_loss") -> float | None:
    if not lev or not ref or lev.get(col) is None or ref.get(col) is None:
        return None
    return float(lev[col]) - float(ref[col])


def _row_brief(r: dict | None) -> dict[str, Any] | None:
    if not r:
        return None
    keys = ("name", "total", "embedding", "generator", "body", "head", "n_layers", "d_model", "vocab_size",
            "tokens", "flops", "lr", "final_val_loss", "mean_tokens_per_s", "wall_time_s", "lr_searched",
            "lr_at_edge", "tied")
    out = {k: r.get(k) for k in keys}
    out["buckets"] = {b: r.get(f"loss_{b}") for b in BUCKET_NAMES}
    out["tokens_per_param"] = r["tokens"] / r["total"] if r.get("total") else None
    out["table_head_share"] = (r["embedding"] + r["head"]) / r["total"] if r.get("total") else None
    return out


def _eval_curve(run_dir: str) -> list[dict[str, Any]]:
    from .registry import eval_curve

    df = eval_curve(run_dir)
    cols = [c for c in ("step", "tokens", "val_loss", *(f"loss_{b}" for b in BUCKET_NAMES)) if c in df]
    return [{c: (None if v != v else v) for c, v in row.items()} for row in df[cols].to_dict("records")]


def study_report(study_dir: str | Path, *, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Every number the study's README states, from the run directories (nothing is typed in)."""
    from .interpretation import dense_law_problems
    from .registry import load_for_fit
    from .scaling import analyze_runs

    study_dir = Path(study_dir)
    plan = load_plan(study_dir)
    names = [sw["name"] for sw in plan["sweeps"]]
    runs = {n: _runs_of(study_dir, n) for n in names}
    report: dict[str, Any] = {"name": plan.get("name"), "sweeps": {}, "wall_time_s": {}}
    for n in names:
        report["wall_time_s"][n] = sum(float(r.get("wall_time_s") or 0) for r in _all_runs(study_dir / n))
    main = runs.get("main", {})
    if main:
        from .scaling import ScalingFitError

        try:
            fit = analyze_runs(load_for_fit(study_dir / "main"), n_boot=n_boot, seed=seed).to_dict()
            fit["law_problems"] = dense_law_problems(fit)
            report["fit"] = fit
        except ScalingFitError as exc:  # a study still running: too few dense sizes yet
            fit = {"leviathan": []}
            report["fit_error"] = str(exc)
        eff = {r["name"]: r for r in fit["leviathan"]}
        sizes = []
        for sw in plan["sweeps"]:
            if sw["name"] == "main":
                sizes = sorted({s["name"] for s in sw["sizes"]}, key=lambda s: int("".join(c for c in s if c.isdigit())))
        rows = []
        for s in sizes:
            d, lev = main.get(f"{s}-dense"), main.get(f"{s}-lev-isoparam-depth")
            tied, back = main.get(f"{s}-dense-tied"), main.get(f"{s}-lev-backbone")
            e = eff.get(lev["name"]) if lev else None
            eb = eff.get(back["name"]) if back else None
            rows.append({"size": s, "dense": _row_brief(d), "leviathan": _row_brief(lev),
                         "dense_tied": _row_brief(tied), "leviathan_backbone": _row_brief(back),
                         "gap_isoparam": _gap(lev, d),
                         "bucket_gaps_isoparam": {b: _gap(lev, d, f"loss_{b}") for b in BUCKET_NAMES},
                         "gap_isobody_vs_untied": _gap(back, d), "gap_backbone_vs_tied": _gap(back, tied),
                         "bucket_gaps_backbone": {b: _gap(back, tied, f"loss_{b}") for b in BUCKET_NAMES},
                         "multiplier": None if e is None else e["multiplier"],
                         "multiplier_ci": None if e is None else e["multiplier_ci"],
                         "backbone_multiplier": None if eb is None else eb["multiplier"],
                         "backbone_multiplier_ci": None if eb is None else eb["multiplier_ci"]})
        report["sweeps"]["main"] = rows
    # seed spread: the same model at seed 0 (main) and seed 1
    spread = []
    for key, r1 in runs.get("seed1", {}).items():
        r0 = main.get(key)
        if r0:
            spread.append({"model": key, "seed0": r0["final_val_loss"], "seed1": r1["final_val_loss"],
                           "abs_diff": abs(r0["final_val_loss"] - r1["final_val_loss"]),
                           "rare_abs_diff": None if r0.get("loss_rare") is None or r1.get("loss_rare") is None
                           else abs(r0["loss_rare"] - r1["loss_rare"])})
    for key, r1 in runs.get("prose-seed1", {}).items():
        r0 = runs.get("prose", {}).get(key)
        if r0:
            spread.append({"model": f"prose {key}", "seed0": r0["final_val_loss"], "seed1": r1["final_val_loss"],
                           "abs_diff": abs(r0["final_val_loss"] - r1["final_val_loss"]),
                           "rare_abs_diff": None if r0.get("loss_rare") is None or r1.get("loss_rare") is None
                           else abs(r0["loss_rare"] - r1["loss_rare"])})
    report["seed_spread"] = spread
    report["seed_spread_max"] = max((s["abs_diff"] for s in spread), default=None)
    report["seed_gap_spread"] = _gap_spread(main, runs.get("seed1", {}))
    # does the gap grow with training?
    # the 4x longer sweep when it has run; until then main's own curves at the same width
    # (a quarter of the tokens), said as such
    curve_source = "long"
    long = runs.get("long", {})
    long_size = next((s["name"] for sw in plan["sweeps"] if sw["name"] == "long" for s in sw["sizes"]), None)
    if not any(k.endswith("-lev-isoparam-depth") for k in long) and long_size:
        curve_source, long = "main", {k: v for k, v in main.items() if v["size"] == long_size}
    if long:
        size = next(iter(long.values()))["size"]
        d, lev = long.get(f"{size}-dense"), long.get(f"{size}-lev-isoparam-depth")
        if d and lev:
            dc, lc = _eval_curve(d["run_dir"]), _eval_curve(lev["run_dir"])
            by_tokens = {p["tokens"]: p for p in dc}
            report["gap_vs_tokens"] = {
                "size": size, "sweep": curve_source, "dense": _row_brief(d), "leviathan": _row_brief(lev),
                "points": [{"tokens": p["tokens"], "dense": by_tokens[p["tokens"]]["val_loss"], "leviathan": p["val_loss"],
                            "gap": p["val_loss"] - by_tokens[p["tokens"]]["val_loss"],
                            "rare_gap": None if p.get("loss_rare") is None or by_tokens[p["tokens"]].get("loss_rare") is None
                            else p["loss_rare"] - by_tokens[p["tokens"]]["loss_rare"]}
                           for p in lc if p["tokens"] in by_tokens]}
    # the regime map: the isoparametric gap against kept vocabulary at one width
    regime = []
    for sw in plan["sweeps"]:
        n = sw["name"]
        if not (n.startswith("vocab-") or n == "main"):
            continue
        for key, r in runs.get(n, {}).items():
            if key.endswith("-dense") and r["size"] == "d64":
                lev = runs[n].get(f"{r['size']}-lev-isoparam-depth")
                if lev:
                    regime.append({"sweep": n, "vocab_size": r["vocab_size"], "dense": _row_brief(r),
                                   "leviathan": _row_brief(lev), "gap": _gap(lev, r),
                                   "rare_gap": _gap(lev, r, "loss_rare")})
    report["regime_map"] = sorted(regime, key=lambda x: x["vocab_size"])
    prose = []
    for n in ("prose", "prose-seed1"):
        for key, r in runs.get(n, {}).items():
            if key.endswith("-dense"):
                lev = runs[n].get(f"{r['size']}-lev-isoparam-depth")
                prose.append({"sweep": n, "dense": _row_brief(r), "leviathan": _row_brief(lev),
                              "gap": _gap(lev, r), "bucket_gaps": {b: _gap(lev, r, f"loss_{b}") for b in BUCKET_NAMES}})
    report["prose"] = prose
    report["verdict"] = verdict(report)
    return report


def _gap_spread(main: dict, seed1: dict) -> list[dict[str, Any]]:
    """The isoparametric gap at each seed where both models ran twice: how much the gap itself moves."""
    out = []
    for key in seed1:
        if key.endswith("-dense"):
            size = key[: -len("-dense")]
            lev_key = f"{size}-lev-isoparam-depth"
            if lev_key in seed1 and key in main and lev_key in main:
                out.append({"size": size, "gap_seed0": _gap(main[lev_key], main[key]),
                            "gap_seed1": _gap(seed1[lev_key], seed1[key])})
    return out


def _all_runs(sweep_dir: Path) -> list[dict[str, Any]]:
    out = []
    root = sweep_dir / SWEEP_RUNS
    if root.is_dir():
        for run in sorted(root.iterdir()):
            summary = read_json_or_none(run / SUMMARY)
            if summary is not None:
                out.append(summary)
    return out


def _fmt(x: float | None, spec: str = ".3f", signed: bool = False) -> str:
    if x is None:
        return "-"
    return format(x, ("+" if signed else "") + spec)


def verdict(report: dict[str, Any]) -> list[str]:
    """Sentences written from the numbers: who wins, by how much, against which spread, at what cost."""
    from .interpretation import PAPER_MULTIPLIER_BAND

    out = []
    if report.get("fit_error"):
        out.append(f"No dense law yet: {report['fit_error']}.")
    rows = report.get("sweeps", {}).get("main") or []
    spread = report.get("seed_spread_max")
    noise = f"the largest seed-to-seed difference of one model is {spread:.3f} nats" if spread is not None else \
        "no seed spread was measured"
    fit = report.get("fit")
    if fit is not None:
        if fit.get("law_problems"):
            out.append("The dense law is not determined: " + "; ".join(fit["law_problems"]) +
                       ". Multipliers below are not interpretable.")
        else:
            a = fit["dense_fit"]["alpha"]
            out.append(f"The dense law is determined: L(N) = E + A N^-alpha with alpha = {a['value']:.3f} "
                       f"[{_fmt(a['ci'][0])}, {_fmt(a['ci'][1])}] over {fit['dense_fit']['n_points']} dense sizes.")
    gaps = [(r["size"], r["gap_isoparam"]) for r in rows if r.get("gap_isoparam") is not None]
    if gaps:
        wins = [s for s, g in gaps if spread is not None and g < -spread]
        losses = [s for s, g in gaps if spread is not None and g > spread]
        ties = [s for s, g in gaps if s not in wins and s not in losses]
        text = ", ".join(f"{s} {g:+.3f}" for s, g in gaps)
        if spread is None:  # nothing to call a gap noise or not against
            out.append(f"Isoparametric Leviathan minus dense validation loss (lower is better for Leviathan): {text}; "
                       f"{noise} yet, so no gap can be called a win or a loss.")
        else:
            out.append(f"Isoparametric Leviathan minus dense validation loss (lower is better for Leviathan): {text}; "
                       f"{noise}. Leviathan wins beyond that spread at {len(wins)} of {len(gaps)} widths"
                       + (f" ({', '.join(wins)})" if wins else "") + f", loses beyond it at {len(losses)}"
                       + (f" ({', '.join(losses)})" if losses else "") + f", and the rest ({', '.join(ties) or 'none'}) "
                       f"are within it.")
        mults = [(r["size"], r["multiplier"], r["multiplier_ci"]) for r in rows if r.get("multiplier") is not None]
        if mults and fit is not None and not fit.get("law_problems"):
            lo, hi = PAPER_MULTIPLIER_BAND
            text = ", ".join(f"{s} {m:.2f}x [{_fmt(c[0], '.2f')}, {_fmt(c[1], '.2f')}]" for s, m, c in mults)
            inside = [s for s, m, c in mults if c[0] is not None and c[0] >= lo]
            below = [s for s, m, c in mults if c[1] is not None and c[1] < 1.0]
            out.append(f"Effective-parameter multipliers N_eff/N with 95% bootstrap intervals: {text} (the paper: "
                       f"{lo}x-{hi}x). Intervals entirely at or above the paper's lower end: {len(inside)}; "
                       f"entirely below 1 (Leviathan worth fewer parameters than it has): {len(below)}.")
        rare = [(r["size"], r["bucket_gaps_isoparam"]["rare"], r["bucket_gaps_isoparam"]["frequent"]) for r in rows
                if r["bucket_gaps_isoparam"]["rare"] is not None]
        if rare:
            out.append("By token frequency (Leviathan minus dense): rare " +
                       ", ".join(f"{s} {g:+.3f}" for s, g, _ in rare) + "; frequent " +
                       ", ".join(f"{s} {f:+.3f}" for s, _, f in rare) + ".")
        costs = [(r["size"], r["leviathan"]["flops"] / r["dense"]["flops"],
                  r["leviathan"]["wall_time_s"] / r["dense"]["wall_time_s"]) for r in rows
                 if r.get("leviathan") and r.get("dense") and r["dense"].get("flops") and r["dense"].get("wall_time_s")]
        if costs:
            out.append("Cost: the isoparametric Leviathan spent " + ", ".join(
                f"{s} {f:.1f}x the FLOPs and {w:.1f}x the wall time" for s, f, w in costs) + " of its dense twin.")
    back = [(r["size"], r["gap_backbone_vs_tied"], r["bucket_gaps_backbone"]["rare"]) for r in rows
            if r.get("gap_backbone_vs_tied") is not None]
    if back:
        out.append("The revision's identical backbone (Leviathan minus tied dense, same width and depth): " +
                   ", ".join(f"{s} {g:+.3f} (rare {_fmt(rg, '+.3f')})" for s, g, rg in back) + ".")
    g = report.get("gap_vs_tokens")
    if g and g["points"]:
        first, last = g["points"][0], g["points"][-1]
        lead = "At width" if g.get("sweep", "long") == "long" else \
            "The 4x longer sweep has not run; in main's runs at width"
        out.append(f"{lead} {g['size'][1:]} trained on {last['tokens']:,} tokens, the gap went from "
                   f"{first['gap']:+.3f} at {first['tokens']:,} tokens to {last['gap']:+.3f}"
                   + (f" (rare {_fmt(first['rare_gap'], '+.3f')} to {_fmt(last['rare_gap'], '+.3f')})"
                      if last.get("rare_gap") is not None else "") + ".")
    reg = report.get("regime_map") or []
    if reg:
        out.append("Regime map at width 64 (gap against kept vocabulary): " + ", ".join(
            f"{r['vocab_size'] - 1:,} ids {r['gap']:+.3f} (rare {_fmt(r['rare_gap'], '+.3f')})" for r in reg) + ".")
    pr = [p for p in report.get("prose") or [] if p.get("gap") is not None]
    if pr:
        out.append("English prose, smallest comparison: " + ", ".join(f"{p['sweep']} {p['gap']:+.3f}" for p in pr)
                   + ".")
    return out


def format_report(report: dict[str, Any]) -> str:
    """The study's tables in Markdown (what its README shows), from ``study_report``."""
    lines = [f"# {report.get('name')}: results", ""]
    lines += ["Every number below is printed by `leviathan-explore study report` from the committed runs.", ""]
    rows = report.get("sweeps", {}).get("main") or []
    if rows:
        lines += ["## Isoparametric: dense vs Leviathan with the savings spent on depth", "",
                  "| width | dense N | tokens/N | dense loss | Leviathan N (layers) | Leviathan loss | gap | "
                  "N_eff/N [95%] | FLOPs Lev/dense | wall Lev/dense |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        compared = [(r, r["dense"], r["leviathan"]) for r in rows if r["dense"] and r["leviathan"]]
        for r, d, lev in compared:
            ci = r["multiplier_ci"] or [None, None]
            lines.append(f"| {r['size']} | {d['total']:,} | {d['tokens_per_param']:.2f} | {d['final_val_loss']:.4f} | "
                         f"{lev['total']:,} ({lev['n_layers']}) | {lev['final_val_loss']:.4f} | "
                         f"{_fmt(r['gap_isoparam'], '+.4f')} | {_fmt(r['multiplier'], '.2f')} "
                         f"[{_fmt(ci[0], '.2f')}, {_fmt(ci[1], '.2f')}] | {lev['flops'] / d['flops']:.2f} | "
                         f"{lev['wall_time_s'] / d['wall_time_s']:.2f} |")
        lines += ["", "Loss by target frequency (frequent: ids covering the top 50% of training tokens; medium: the "
                  "next 40%; rare: the rest):", "",
                  "| width | dense frequent / medium / rare | Leviathan frequent / medium / rare | gap rare |",
                  "|---|---|---|---|"]
        for r, d, lev in compared:
            fb = lambda x: " / ".join(_fmt(x["buckets"][b]) for b in BUCKET_NAMES)  # noqa: E731
            lines.append(f"| {r['size']} | {fb(d)} | {fb(lev)} | {_fmt(r['bucket_gaps_isoparam']['rare'], '+.3f')} |")
        back = [r for r in rows if r.get("leviathan_backbone")]
        if back:
            lines += ["", "## Same body: iso-body (vs the untied dense) and the revision's identical backbone "
                      "(vs the tied dense)", "",
                      "| width | dense untied | dense tied | Leviathan same body (N) | vs untied | vs tied | "
                      "rare vs tied | N_eff/N [95%] |", "|---|---|---|---|---|---|---|---|"]
            for r in back:
                ci = r["backbone_multiplier_ci"] or [None, None]
                t = r["dense_tied"]
                lines.append(f"| {r['size']} | {_fmt(r['dense']['final_val_loss'], '.4f')} | "
                             f"{_fmt(t['final_val_loss'] if t else None, '.4f')} | "
                             f"{r['leviathan_backbone']['final_val_loss']:.4f} ({r['leviathan_backbone']['total']:,}) | "
                             f"{_fmt(r['gap_isobody_vs_untied'], '+.4f')} | {_fmt(r['gap_backbone_vs_tied'], '+.4f')} | "
                             f"{_fmt(r['bucket_gaps_backbone']['rare'], '+.3f')} | "
                             f"{_fmt(r['backbone_multiplier'], '.2f')} [{_fmt(ci[0], '.2f')}, {_fmt(ci[1], '.2f')}] |")
        lr = [(r["size"], k, r[k]) for r in rows for k in ("dense", "leviathan", "dense_tied", "leviathan_backbone")
              if r.get(k)]
        lines += ["", "Learning rates (searched on a grid at the endpoints, interpolated in between):", "",
                  "| width | model | lr | searched | at grid edge |", "|---|---|---|---|---|"]
        for s, k, m in lr:
            lines.append(f"| {s} | {k} | {m['lr']:.3g} | {'yes' if m.get('lr_searched') else 'no'} | "
                         f"{'yes' if m.get('lr_at_edge') else 'no'} |")
    fit = report.get("fit")
    if fit:
        f = fit["dense_fit"]
        lines += ["", "## The dense law", "", f"`{f['law']}` on {f['n_points']} dense runs "
                  f"({f['n_boot']} bootstrap resamples, {f['n_failed']} failed):", "",
                  "| | value | 95% interval |", "|---|---|---|"]
        for k in ("E", "A", "alpha"):
            lines.append(f"| {k} | {f[k]['value']:.4g} | [{_fmt(f[k]['ci'][0], '.4g')}, {_fmt(f[k]['ci'][1], '.4g')}] |")
        lines += ["", "Dense losses by size: " + ", ".join(f"{r['name']} {r['loss']:.4f}" for r in fit["dense"]) + "."]
        if fit.get("law_problems"):
            lines += ["", "**Not determined:** " + "; ".join(fit["law_problems"]) + "."]
    if report.get("seed_spread"):
        lines += ["", "## Seed spread", "", "| model | seed 0 | seed 1 | difference | rare difference |",
                  "|---|---|---|---|---|"]
        for s in report["seed_spread"]:
            lines.append(f"| {s['model']} | {s['seed0']:.4f} | {s['seed1']:.4f} | {s['abs_diff']:.4f} | "
                         f"{_fmt(s['rare_abs_diff'], '.4f')} |")
        for g in report.get("seed_gap_spread") or []:
            lines.append(f"\nIsoparametric gap at {g['size']}: {g['gap_seed0']:+.4f} (seed 0), {g['gap_seed1']:+.4f} (seed 1).")
    g = report.get("gap_vs_tokens")
    if g:
        source = "" if g.get("sweep", "long") == "long" else "; main's runs, the 4x longer sweep has not run"
        lines += ["", f"## Does the gap grow with training? (width {g['size'][1:]}, {g['dense']['tokens']:,} tokens{source})", "",
                  "| tokens | dense | Leviathan | gap | rare gap |", "|---|---|---|---|---|"]
        for p in g["points"]:
            lines.append(f"| {p['tokens']:,} | {p['dense']:.4f} | {p['leviathan']:.4f} | {p['gap']:+.4f} | "
                         f"{_fmt(p['rare_gap'], '+.3f')} |")
    if report.get("regime_map"):
        lines += ["", "## The regime map (width 64, same budget)", "",
                  "| kept ids | table+head share (dense) | dense | Leviathan | gap | rare gap |", "|---|---|---|---|---|---|"]
        for r in report["regime_map"]:
            lines.append(f"| {r['vocab_size'] - 1:,} | {r['dense']['table_head_share']:.0%} | "
                         f"{r['dense']['final_val_loss']:.4f} | {r['leviathan']['final_val_loss']:.4f} | "
                         f"{r['gap']:+.4f} | {_fmt(r['rare_gap'], '+.3f')} |")
    if report.get("prose"):
        lines += ["", "## A second corpus: English prose", "", "| sweep | dense | Leviathan | gap | rare gap |",
                  "|---|---|---|---|---|"]
        for p in report["prose"]:
            lines.append(f"| {p['sweep']} | {p['dense']['final_val_loss']:.4f} | "
                         f"{_fmt(p['leviathan']['final_val_loss'] if p['leviathan'] else None, '.4f')} | "
                         f"{_fmt(p['gap'], '+.4f')} | {_fmt(p['bucket_gaps']['rare'], '+.3f')} |")
    lines += ["", "## Compute", "", "| sweep | wall time of its runs |", "|---|---|"]
    for n, t in report["wall_time_s"].items():
        lines.append(f"| {n} | {t / 60:.1f} min |")
    lines.append(f"| all | {sum(report['wall_time_s'].values()) / 3600:.2f} h (one core each run) |")
    lines += ["", "## What the numbers say", ""] + [f"- {v}" for v in report.get("verdict", [])]
    return "\n".join(lines) + "\n"
