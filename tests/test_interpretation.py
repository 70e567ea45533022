"""Verdicts written from numbers (analysis.interpretation), the runs a browser lists with their
status (analysis.registry.scan_runs), and the verdict line of `leviathan-explore compare`."""

from __future__ import annotations

import copy
import json
import math
import os
import re
import time
from pathlib import Path

import pytest

from leviathan_explore.analysis.interpretation import (PAPER_MULTIPLIER_BAND, dense_law_problems, format_number,
                                                       pair_verdict, scaling_verdict)
from leviathan_explore.analysis.registry import fit_table, scan_runs, seed_spread, training_flops

REPO = Path(__file__).resolve().parents[1]


def summary(arch: str, loss: float | None, *, total: int = 600_000, rate: float = 10_000.0, wall: float = 20.0,
            match: str | None = None, steps: int = 300, tokens: int = 600_000, tied: bool = False) -> dict:
    embedding = 0 if arch == "leviathan" else total // 3
    generator = total // 20 if arch == "leviathan" else 0
    head = total // 3
    return {"arch": arch, "match": match if arch == "leviathan" else None, "steps": steps, "steps_planned": steps,
            "tokens_seen": tokens, "final_val_loss": loss, "final_val_ppl": None if loss is None else math.exp(loss),
            "mean_tokens_per_s": rate, "wall_time_s": wall, "finished": True, "stopped_early": False,
            "model_config": {"tie_embeddings": tied},
            "params": {"embedding": embedding, "generator": generator, "head": head,
                       "body": total - embedding - generator - head, "total": total}}


# ---- the pair verdict ------------------------------------------------------------------------

def test_pair_verdict_says_lower_is_better_who_won_and_by_how_much():
    dense, lev = summary("dense", 4.88, rate=12_400), summary("leviathan", 5.08, rate=1_900, match="isoparam")
    text = pair_verdict(dense, lev)
    first = text.splitlines()[0]
    assert "lower is better" in first and "dense 4.880" in first and "Leviathan isoparametric 5.080" in first
    assert "Dense wins by 0.200 nats" in first
    assert f"{math.exp(0.2):.2f}x" in first  # the perplexity ratio
    # swap who wins: the text follows the numbers
    swapped = pair_verdict(summary("dense", 5.08), summary("leviathan", 4.88, match="isoparam"))
    assert "Leviathan isoparametric wins by 0.200 nats" in swapped and "Dense wins" not in swapped
    tie = pair_verdict(summary("dense", 4.880), summary("leviathan", 4.882, match="isoparam"))
    assert "A tie" in tie and "wins" not in tie.splitlines()[0]


def test_pair_verdict_gives_each_side_s_parameters_compute_and_speed():
    dense = summary("dense", 4.88, total=631_232, rate=12_400, wall=49.5)
    lev = summary("leviathan", 5.08, total=625_376, rate=1_900, wall=323.0, match="isoparam")
    cost = pair_verdict(dense, lev).splitlines()[1]
    assert "631k parameters" in cost and "625k parameters" in cost
    assert f"{training_flops(dense['params'], dense['tokens_seen']):.2g}" in cost
    assert f"{training_flops(lev['params'], lev['tokens_seen']):.2g}" in cost
    assert "12.4k tokens/s" in cost and "1.9k tokens/s" in cost and "50 s wall" in cost and "323 s wall" in cost
    assert f"{100 * (1 - 1_900 / 12_400):.0f}% slower" in cost
    faster = pair_verdict(dense, {**lev, "mean_tokens_per_s": 24_800}).splitlines()[1]
    assert "100% faster" in faster and "slower per token" not in faster


def test_pair_verdict_relates_the_gap_to_the_paper_and_the_run_s_scale():
    dense, lev = summary("dense", 4.88), summary("leviathan", 5.08, match="isoparam")
    tiny = pair_verdict(dense, lev, seed_spread=0.19)
    lo, hi = PAPER_MULTIPLIER_BAND
    assert f"{lo}x-{hi}x" in tiny and "not expected to show" in tiny and "results/sweeps/" in tiny
    assert "0.200 nats is larger than the 0.19-nat spread" in tiny
    within = pair_verdict(dense, summary("leviathan", 4.95, match="isoparam"), seed_spread=0.19)
    assert "0.070 nats is within the 0.19-nat spread" in within and "cannot tell the two apart" in within
    big = pair_verdict(summary("dense", 3.1, total=420_000_000), summary("leviathan", 3.0, total=420_000_000,
                                                                        match="isoparam"))
    assert "not expected to show" not in big and "420M parameters" in big
    backbone = pair_verdict(summary("dense", 4.0, tied=True), summary("leviathan", 3.9, match="backbone"))
    assert "dense (tied) 4.000" in backbone and "identical backbone" in backbone and "rare tokens" in backbone


def test_pair_verdict_without_a_loss_or_with_unequal_training():
    text = pair_verdict(summary("dense", 4.9), summary("leviathan", None, match="isoparam"))
    assert text.startswith("No verdict") and "Leviathan isoparametric" in text
    stopped = summary("leviathan", 5.5, match="isoparam")
    stopped.update(stopped_early=True, steps=17, steps_planned=300)
    assert "stopped at step 17 of 300" in pair_verdict(summary("dense", 4.9), stopped)


# ---- the scaling verdict ---------------------------------------------------------------------

def fit_report(*, multipliers=(1.8,), cis=((1.5, 2.4),), alpha=(0.3, (0.2, 0.4)), E=1.0, failed=0,
               dense_losses=(5.0, 4.5, 4.2, 4.0), sizes=(1e6, 3e6, 1e7, 3e7)) -> dict:
    return {
        "x": "total",
        "dense_fit": {"E": {"value": E, "ci": [0.5, 1.5]}, "A": {"value": 50.0, "ci": [10.0, 90.0]},
                      "alpha": {"value": alpha[0], "ci": list(alpha[1])}, "n_points": len(sizes),
                      "level": 0.95, "n_boot": 1000, "n_failed": failed},
        "dense": [{"name": f"d{i}", "n_params": n, "loss": loss}
                  for i, (n, loss) in enumerate(zip(sizes, dense_losses))],
        "leviathan": [{"name": f"lev{i}", "n_params": 2e6, "loss": 4.4, "multiplier": m, "multiplier_ci": list(ci),
                       "beyond_fitted_range": False, "extrapolated": False, "matched_dense_loss": 4.6}
                      for i, (m, ci) in enumerate(zip(multipliers, cis))],
        "warnings": [],
    }


def test_scaling_verdict_places_the_multipliers_against_the_paper_band():
    inside = scaling_verdict(fit_report())
    assert "larger than itself (1.80x)" in inside and "partly inside the paper's 1.47x-2.11x" in inside
    assert "reach into the paper's band" in inside and "Warning" not in inside
    below = scaling_verdict(fit_report(multipliers=(0.13, 0.84), cis=((0.0, 0.45), (0.5, 0.9))))
    assert "smaller than itself (0.13x-0.84x)" in below and "below the paper's" in below
    assert "No interval reaches the paper's band" in below
    unbounded = scaling_verdict(fit_report(multipliers=(0.74,), cis=((0.0, None),)))
    assert "[0.00, unbounded]" in unbounded and "cannot rule the paper's value out" in unbounded
    assert "1 of 1 Leviathan run(s) beat the dense run of their own size" in inside
    assert "10k" not in inside and "1M-30M parameters" in inside


@pytest.mark.parametrize("change,phrase", [
    (dict(alpha=(0.027, (0.0, 0.08))), "the exponent's interval reaches 0"),
    (dict(E=4.0 * (1 - 1e-6)), "sits at its upper bound"),
    (dict(failed=350), "350 of 1,000 bootstrap resamples could not be fitted"),
    (dict(dense_losses=(5.0, 5.2, 4.2, 4.0)), "dense loss does not fall with size (d1"),
])
def test_scaling_verdict_warns_when_the_dense_law_is_not_determined(change, phrase):
    report = fit_report(**change)
    assert phrase in " ".join(dense_law_problems(report))
    text = scaling_verdict(report)
    assert text.startswith("Warning: the dense law is not determined") and phrase in text
    assert not dense_law_problems(fit_report())


def test_format_number_never_prints_a_misleading_zero():
    assert format_number(0.004) == "<0.01" and format_number(0.0) == "0.00" and format_number(1.234) == "1.23"
    assert format_number(None) == "-" and format_number(float("inf")) == "-"


def test_the_scaling_verdict_of_a_committed_sweep_matches_its_fit():
    fit = json.loads((REPO / "results" / "sweeps" / "cpu-stdlib-v2" / "fit.json").read_text())
    text = scaling_verdict(fit)
    mults = [r["multiplier"] for r in fit["leviathan"] if r["multiplier"] is not None]
    assert f"({min(mults):.2f}x-{max(mults):.2f}x)" in text
    assert ("Warning" in text) == bool(dense_law_problems(fit))


def test_paper_band_is_defined_once_in_the_dashboard_and_viz():
    offenders = []
    for folder in ("dashboard", "viz"):
        for path in (REPO / "leviathan_explore" / folder).glob("*.py"):
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if re.search(r"1\.47|2\.11", line):
                    offenders.append(f"{path.name}:{n}: {line.strip()}")
    assert offenders == []


# ---- runs with their status --------------------------------------------------------------------

def _run(root: Path, rel: str, s: dict | None, *, age_s: float = 0.0) -> Path:
    d = root / rel
    d.mkdir(parents=True)
    if s is None:
        (d / "config.json").write_text(json.dumps({"arch": "leviathan"}))
        stamp = d
    else:
        (d / "summary.json").write_text(json.dumps(s))
        stamp = d / "summary.json"
    t = time.time() - age_s
    os.utime(stamp, (t, t))
    return d


def test_scan_runs_gives_each_run_a_status_newest_first(tmp_path):
    done = {**summary("dense", 4.9), "finished": True}
    stopped = {**summary("leviathan", None, match="isoparam"), "finished": False, "stopped_early": True,
               "steps": 17, "steps_planned": 400}
    failed = {**summary("leviathan", None, match="isoparam"), "finished": False, "error": "loss became nan at step 3"}
    _run(tmp_path, "old/dense", done, age_s=300)
    _run(tmp_path, "mid/leviathan", stopped, age_s=200)
    _run(tmp_path, "bad/leviathan", failed, age_s=100)
    _run(tmp_path, "now/leviathan", None)
    records, problems = scan_runs(tmp_path)
    assert problems == []
    assert [(r.name, r.status) for r in records] == [("now/leviathan", "incomplete"), ("bad/leviathan", "failed"),
                                                     ("mid/leviathan", "stopped"), ("old/dense", "finished")]
    labels = {r.name: r.label for r in records}
    assert labels["old/dense"] == "old/dense: dense, 300 steps, val loss 4.900 (finished)"
    assert labels["mid/leviathan"].startswith("mid/leviathan: Leviathan isoparam, 17 of 400 steps, no val loss")
    assert "(failed: loss became nan at step 3)" in labels["bad/leviathan"]
    df, skipped = fit_table(tmp_path)
    assert list(df["name"]) == ["old/dense"] and len(skipped) == 3


def test_seed_spread_is_read_from_the_committed_sweeps():
    spread = seed_spread(REPO / "results" / "sweeps")
    a = json.loads((REPO / "results" / "sweeps" / spread["sweeps"][0] / "selected.json").read_text())["models"]
    b = json.loads((REPO / "results" / "sweeps" / spread["sweeps"][1] / "selected.json").read_text())["models"]
    gaps = {m: abs(a[m]["val_loss"] - b[m]["val_loss"]) for m in set(a) & set(b)}
    assert spread["nats"] == pytest.approx(max(gaps.values())) and gaps[spread["model"]] == spread["nats"]
    assert seed_spread(REPO / "no-such-dir") is None


# ---- `leviathan-explore compare` ends with its verdict -----------------------------------------

def test_compare_prints_the_pair_verdict_last(tmp_path, tiny_data_dir, capsys):
    from leviathan_explore.cli import main

    out = tmp_path / "cmp"
    code = main(["compare", "--preset", "cpu-tiny", "--steps", "3", "--batch-size", "2", "--seq-len", "16",
                 "--data", str(tiny_data_dir), "--out", str(out), "--match", "isobody", "--device", "cpu",
                 "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0
    dense = json.loads((out / "dense" / "summary.json").read_text())
    lev = json.loads((out / "leviathan" / "summary.json").read_text())
    spread = seed_spread(REPO / "results" / "sweeps")
    expected = pair_verdict(dense, lev, seed_spread=None if spread is None else spread["nats"])
    assert printed.rstrip().endswith(expected)
    winner = "Dense wins" if dense["final_val_loss"] < lev["final_val_loss"] else "Leviathan same body wins"
    assert winner in printed.rstrip().splitlines()[-3]


def test_verdicts_do_not_change_their_input():
    dense, lev = summary("dense", 4.88), summary("leviathan", 5.08, match="isoparam")
    before = copy.deepcopy((dense, lev))
    pair_verdict(dense, lev)
    assert (dense, lev) == before
