"""The neighbours comparison: every token representation against the same dense models, law and budget.

A neighbours study (``results/sweeps/neighbours/study.json``) trains the generator's
neighbours (``representations/``) and Leviathan ablations; its plan names the sweeps of
another study whose dense runs, dense law and Leviathan runs it is compared with
(``"reference_sweeps"``, the first holding the dense law). ``neighbours_report`` gathers
every selected run by (size, model kind, seed) and writes, per size and kind: the loss at
each seed, the gap to the dense model of the same size and seed, the rare-token gap, the
effective-parameter multiplier under the reference dense law, and the cost.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .study import _fmt, _runs_of, load_plan

BUCKETS = ("frequent", "medium", "rare")


def _seed_of(sweep_dir: Path) -> int:
    from ..files import read_json_or_none
    from ..training.runs import GRID

    grid = read_json_or_none(sweep_dir / GRID) or {}
    return int(grid.get("seed", grid.get("train", {}).get("seed", 0)) or 0)


def _collect(study_dir: Path, sweeps: list[str]) -> dict[tuple[str, str, int], dict[str, Any]]:
    """(size, kind, seed) -> registry row, over sweeps given as names or paths relative to ``study_dir``."""
    from .study import model_kind

    out: dict[tuple[str, str, int], dict[str, Any]] = {}
    for sweep in sweeps:
        d = (study_dir / sweep).resolve()
        seed = _seed_of(d)
        for key, row in _runs_of(d.parent, d.name).items():
            size = row.get("size") or key.split("-")[0]
            out[(size, model_kind(key, size), seed)] = row
    return out


def neighbours_report(study_dir: str | Path, *, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Every number of the comparison, from the run directories."""
    from .interpretation import dense_law_problems
    from .registry import load_for_fit
    from .scaling import ScalingFitError, analyze_runs

    study_dir = Path(study_dir)
    plan = load_plan(study_dir)
    refs = list(plan.get("reference_sweeps") or [])
    runs = _collect(study_dir, refs + [sw["name"] for sw in plan["sweeps"]])
    report: dict[str, Any] = {"name": plan.get("name"), "reference": refs, "rows": []}
    # the reference dense law, with every non-dense run of this study measured against it
    eff: dict[str, dict[str, Any]] = {}
    if refs:
        import pandas as pd

        from .registry import summary_row

        table = load_for_fit(study_dir / refs[0])
        dense_only = table[table["arch"] == "dense"]
        extra = [dict(summary_row(r["run_dir"]), size=s) for (s, k, sd), r in runs.items()
                 if sd == 0 and r["arch"] != "dense" and r["name"] not in set(dense_only["name"])]
        both = pd.concat([dense_only, pd.DataFrame(extra, columns=table.columns)], ignore_index=True)
        try:
            fit = analyze_runs(both, n_boot=n_boot, seed=seed).to_dict()
            fit["law_problems"] = dense_law_problems(fit)
            report["fit"] = {k: fit[k] for k in ("dense_fit", "law_problems")}
            eff = {r["name"]: r for r in fit["leviathan"]}
        except ScalingFitError as exc:
            report["fit_error"] = str(exc)
    own = _collect(study_dir, [sw["name"] for sw in plan["sweeps"]])
    sizes = sorted({s for s, _, _ in own}, key=lambda s: int("".join(c for c in s if c.isdigit()) or 0))
    for size in sizes:
        # this study's models, and the reference's dense and isoparametric Leviathan of the same size
        kinds = sorted({k for s, k, _ in runs if s == size and (k in ("dense", "lev-isoparam-depth") or
                                                                 any(o[0] == s and o[1] == k for o in own))},
                       key=lambda k: (k != "dense", k != "lev-isoparam-depth", k))
        for kind in kinds:
            seeds = sorted(sd for s, k, sd in runs if s == size and k == kind)
            losses = {sd: runs[(size, kind, sd)]["final_val_loss"] for sd in seeds}
            gaps = {sd: losses[sd] - runs[(size, "dense", sd)]["final_val_loss"] for sd in seeds
                    if (size, "dense", sd) in runs}
            rare = {sd: runs[(size, kind, sd)]["loss_rare"] - runs[(size, "dense", sd)]["loss_rare"] for sd in seeds
                    if (size, "dense", sd) in runs and runs[(size, kind, sd)].get("loss_rare") is not None}
            r0 = runs[(size, kind, seeds[0])]
            dense0 = runs.get((size, "dense", seeds[0]))
            e = eff.get(r0["name"])
            row = {"size": size, "kind": kind, "arch": r0["arch"], "match": r0.get("match"), "total": r0["total"],
                   "n_layers": r0["n_layers"], "lr": r0["lr"], "seeds": seeds, "losses": losses,
                   "lr_searched": bool(r0.get("lr_searched")), "lr_at_edge": bool(r0.get("lr_at_edge")),
                   "mean_loss": sum(losses.values()) / len(losses),
                   "seed_spread": (max(losses.values()) - min(losses.values())) if len(losses) > 1 else None,
                   "gaps": gaps, "mean_gap": sum(gaps.values()) / len(gaps) if gaps else None,
                   "gap_range": (min(gaps.values()), max(gaps.values())) if gaps else None,
                   "rare_gaps": rare, "mean_rare_gap": sum(rare.values()) / len(rare) if rare else None,
                   "buckets": {b: r0.get(f"loss_{b}") for b in BUCKETS},
                   "multiplier": None if e is None else e["multiplier"],
                   "multiplier_ci": None if e is None else e["multiplier_ci"],
                   "wall_ratio": (r0["wall_time_s"] / dense0["wall_time_s"]) if dense0 and dense0.get("wall_time_s")
                   else None,
                   "tokens_per_s": r0.get("mean_tokens_per_s")}
            if r0["arch"] == "hashed":
                from ..config import ModelConfig
                from ..representations.hashed import collision_rate
                from ..training.runs import read_summary

                mc = ModelConfig.from_dict(read_summary(r0["run_dir"])["model_config"])
                row["collision_rate"] = collision_rate(mc.vocab_size, mc.hash_buckets, mc.hash_functions, mc.hash_seed)
            report["rows"].append(row)
    report["verdict"] = verdict(report)
    return report


def _pick(report: dict[str, Any], size: str, kind: str) -> dict[str, Any] | None:
    return next((r for r in report["rows"] if r["size"] == size and r["kind"] == kind), None)


def verdict(report: dict[str, Any]) -> list[str]:
    """Sentences from the numbers: does the spline part add anything, and how each ranks on rare tokens."""
    out = []
    rows = [r for r in report["rows"] if r["kind"] != "dense" and r["mean_gap"] is not None]
    spreads = [r["seed_spread"] for r in report["rows"] if r.get("seed_spread") is not None]
    noise = max(spreads) if spreads else None
    if report.get("fit_error"):
        out.append(f"No reference dense law: {report['fit_error']}.")
    elif report.get("fit", {}).get("law_problems"):
        out.append("The reference dense law is not determined (" + "; ".join(report["fit"]["law_problems"]) +
                   "): multipliers are not interpretable.")
    edge = [f"{r['size']} {r['kind']}" for r in rows if r.get("lr_at_edge")]
    if edge:
        out.append("Learning rate at the edge of its searched grid (the best may lie beyond it, so these models "
                   "may be under-tuned): " + ", ".join(edge) + ".")
    for size in sorted({r["size"] for r in rows}, key=lambda s: int("".join(c for c in s if c.isdigit()) or 0)):
        lev, cb = _pick(report, size, "lev-isoparam-depth"), _pick(report, size, "codebooks-isoparam-depth")
        # paired by seed (same data order and initial body), over the seeds both have
        paired = ({sd: lev["losses"][sd] - cb["losses"][sd] for sd in sorted(set(lev["losses"]) & set(cb["losses"]))}
                  if lev and cb else {})
        if paired:
            diff = sum(paired.values()) / len(paired)
            # the design's rule: the mean difference against the largest seed spread; with one seed
            # there is no spread yet, and nothing is called a difference
            beyond = noise is not None and abs(diff) > noise
            answer = (("help" if diff < 0 else "hurt") if beyond else
                      "make no difference beyond the noise" if noise is not None else
                      "cannot be judged yet (one seed: no seed spread)")
            per_seed = ", ".join(f"seed {sd} {v:+.3f}" for sd, v in paired.items())
            mult = ""
            if lev.get("multiplier") is not None and cb.get("multiplier") is not None:
                lci, cci = lev.get("multiplier_ci") or [None, None], cb.get("multiplier_ci") or [None, None]
                mult = (f"; effective-parameter multipliers Leviathan {lev['multiplier']:.2f}x "
                        f"[{_fmt(lci[0], '.2f')}, {_fmt(lci[1], '.2f')}], codebooks-only {cb['multiplier']:.2f}x "
                        f"[{_fmt(cci[0], '.2f')}, {_fmt(cci[1], '.2f')}] (95% bootstrap intervals)")
            out.append(f"{size}: Leviathan minus codebooks-only (isoparametric) {diff:+.3f} nats, mean over seeds "
                       f"({per_seed}), against a largest seed spread of {_fmt(noise)}{mult}: the spline stages "
                       f"{answer} at this scale.")
        ranked = sorted((r for r in rows if r["size"] == size and r["mean_rare_gap"] is not None),
                        key=lambda r: r["mean_rare_gap"])
        if ranked:
            out.append(f"{size}, rare targets, best first (model minus dense, mean over seeds): " +
                       ", ".join(f"{r['kind']} {r['mean_rare_gap']:+.3f}" for r in ranked) + ".")
        overall = sorted((r for r in rows if r["size"] == size), key=lambda r: r["mean_gap"])
        if overall:
            out.append(f"{size}, all targets, best first: " +
                       ", ".join(f"{r['kind']} {r['mean_gap']:+.3f}" for r in overall) + ".")
    return out


def format_report(report: dict[str, Any]) -> str:
    lines = [f"# {report.get('name')}: results", "",
             "Every number below is printed by `leviathan-explore study report` from the committed runs; the "
             f"dense models, their law and the Leviathan runs come from {', '.join(report['reference'])}.", "",
             "| size | model | match | params (layers) | lr | loss per seed | gap to dense [per seed] | "
             "rare gap | N_eff/N [95%] | wall vs dense |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        ci = r["multiplier_ci"] or [None, None]
        losses = " / ".join(f"{v:.4f}" for _, v in sorted(r["losses"].items()))
        gaps = "-" if not r["gaps"] else f"{r['mean_gap']:+.4f} [" + ", ".join(
            f"{v:+.3f}" for _, v in sorted(r["gaps"].items())) + "]"
        extra = f" (collisions {r['collision_rate']:.1%})" if r.get("collision_rate") is not None else ""
        lines.append(f"| {r['size']} | {r['kind']}{extra} | {r['match'] or '-'} | {r['total']:,} ({r['n_layers']}) | "
                     f"{r['lr']:.3g}{' (edge)' if r.get('lr_at_edge') else ''} | {losses} | {gaps} | {_fmt(r['mean_rare_gap'], '+.3f')} | "
                     f"{_fmt(r['multiplier'], '.2f')} [{_fmt(ci[0], '.2f')}, {_fmt(ci[1], '.2f')}] | "
                     f"{_fmt(r['wall_ratio'], '.2f')} |")
    lines += ["", "## What the numbers say", ""] + [f"- {v}" for v in report.get("verdict", [])]
    return "\n".join(lines) + "\n"


def is_neighbours_study(study_dir: str | Path) -> bool:
    try:
        return bool(load_plan(study_dir).get("reference_sweeps"))
    except (FileNotFoundError, ValueError):
        return False
