"""The study driver: plan checks, learning-rate rules, the quick form end to end, the report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from leviathan_explore.analysis.study import (check_plan, format_report, load_plan, quick_plan, resolve_sweep,
                                              study_report)
from leviathan_explore.cli import main
from leviathan_explore.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]
LAPTOP = ROOT / "results" / "sweeps" / "laptop-study"


def test_the_committed_plan_is_valid_and_its_quick_form_keeps_its_structure():
    plan = load_plan(LAPTOP)
    quick = quick_plan(plan)
    assert [s["name"] for s in quick["sweeps"]] == [s["name"] for s in plan["sweeps"]]
    for full, small in zip(plan["sweeps"], quick["sweeps"]):
        assert [s["name"] for s in small["sizes"]] == [s["name"] for s in full["sizes"]]
        assert [s.get("lr_rule") for s in small["sizes"]] == [s.get("lr_rule") for s in full["sizes"]]
        assert small["corpus"]["max_tokens"] <= 200_000
    vocab = {s["name"]: s["corpus"]["compact"] for s in quick["sweeps"]}
    assert vocab["vocab-4k"] < vocab["main"] < vocab["vocab-64k"]  # the map keeps its order


@pytest.mark.parametrize("change,needle", [
    (lambda p: p["sweeps"][1]["sizes"][0].update(lr_rule={"from": "nowhere"}), "lr_rule"),
    (lambda p: p["sweeps"][0].pop("lr_endpoints"), "lr_endpoints"),
    (lambda p: p["sweeps"][1].update(name="main"), "unique"),
    (lambda p: p["sweeps"][0].update(colour="red"), "colour"),
])
def test_bad_plans_are_refused_naming_the_key(change, needle):
    plan = load_plan(LAPTOP)
    change(plan)
    with pytest.raises(ConfigError, match=needle):
        check_plan(plan)


def test_interpolated_and_copied_learning_rates(tmp_path):
    plan = {"name": "t", "preset": "cpu-tiny", "train": {"steps": 2, "batch_size": 1, "seq_len": 8},
            "sweeps": [{"name": "main", "corpus": "python-stdlib-compact", "lr_grid": [1e-3, 2e-3, 4e-3],
                        "lr_endpoints": ["a", "c"],
                        "sizes": [{"name": "a", "model": {"d_model": 32, "n_heads": 2}},
                                  {"name": "c", "model": {"d_model": 128, "n_heads": 2}},
                                  {"name": "b", "model": {"d_model": 64, "n_heads": 2}, "lr_rule": "interpolate"}]},
                       {"name": "copy", "corpus": "python-stdlib-compact",
                        "sizes": [{"name": "b", "model": {"d_model": 64, "n_heads": 2}, "lr_rule": {"from": "main"}}]}]}
    check_plan(plan)
    ready, waiting = resolve_sweep(plan, plan["sweeps"][0], tmp_path, 4097)
    assert [s["name"] for s in ready] == ["a", "c"] and waiting == ["b"]
    (tmp_path / "main").mkdir()
    (tmp_path / "main" / "selected.json").write_text(json.dumps(
        {"models": {"a-dense": {"lr": 1e-3}, "c-dense": {"lr": 4e-3}}}))
    ready, waiting = resolve_sweep(plan, plan["sweeps"][0], tmp_path, 4097)
    assert not waiting
    b = next(s for s in ready if s["name"] == "b")
    from leviathan_explore.config import preset
    from leviathan_explore.params import count_params
    n = [count_params(preset("cpu-tiny", d_model=d, n_heads=2)).total for d in (32, 64, 128)]
    t = (math.log(n[1]) - math.log(n[0])) / (math.log(n[2]) - math.log(n[0]))
    assert b["lr_grid"] == [float(f"{math.exp(math.log(1e-3) + t * math.log(4)):.3g}")]
    ready, waiting = resolve_sweep(plan, plan["sweeps"][1], tmp_path, 4097)
    assert waiting == ["b"]  # main has not chosen for b yet
    sel = json.loads((tmp_path / "main" / "selected.json").read_text())
    sel["models"]["b-dense"] = {"lr": 0.0025}
    (tmp_path / "main" / "selected.json").write_text(json.dumps(sel))
    ready, _ = resolve_sweep(plan, plan["sweeps"][1], tmp_path, 4097)
    assert ready[0]["lr_grid"] == [0.0025]


def test_the_quick_study_runs_end_to_end_and_reports_every_part(quick_studies, tmp_path, capsys):
    out = quick_studies / "laptop-study-quick"
    plan = load_plan(out)
    for sw in plan["sweeps"]:
        sel = json.loads((out / sw["name"] / "selected.json").read_text())
        assert sel["models"], sw["name"]
    main_sel = json.loads((out / "main" / "selected.json").read_text())["models"]
    assert main_sel["d32-dense"]["lr_searched"] and not main_sel["d64-dense"]["lr_searched"]
    # nothing is retrained on a second run
    mtimes = sorted(p.stat().st_mtime_ns for p in out.glob("*/runs/*/summary.json"))
    assert main(["study", "run", str(LAPTOP), "--quick", "--out", str(out)]) == 0
    assert sorted(p.stat().st_mtime_ns for p in out.glob("*/runs/*/summary.json")) == mtimes
    report = study_report(out, n_boot=20)
    assert len(report["sweeps"]["main"]) == 5 and report["seed_spread"] and report["gap_vs_tokens"]["points"]
    assert [r["vocab_size"] for r in report["regime_map"]] == sorted(r["vocab_size"] for r in report["regime_map"])
    assert len(report["regime_map"]) == 3 and len(report["prose"]) == 2 and report["verdict"]
    text = format_report(report)
    for heading in ("## Isoparametric", "## The dense law", "## Seed spread", "## Does the gap grow",
                    "## The regime map", "## A second corpus", "## What the numbers say"):
        assert heading in text, heading
    capsys.readouterr()
    assert main(["study", "report", str(out), "--n-boot", "20", "--json", str(tmp_path / "r.json")]) == 0
    assert "## What the numbers say" in capsys.readouterr().out
    assert json.loads((tmp_path / "r.json").read_text())["name"] == "laptop-study-quick"

    # the neighbours study, against this study's quick dense law and Leviathan runs
    from leviathan_explore.analysis.neighbours import format_report as neighbours_text
    from leviathan_explore.analysis.neighbours import neighbours_report

    near = quick_studies / "neighbours-quick"
    nb = neighbours_report(near, n_boot=20)
    kinds = {(r["size"], r["kind"]) for r in nb["rows"]}
    for kind in ("dense", "lev-isoparam-depth", "codebooks-isoparam-depth", "factorized-isobody",
                 "hashed-isoparam-depth"):
        assert ("d32", kind) in kinds and ("d64", kind) in kinds, kind
    assert ("d32", "nolayernorm-isoparam-depth") in kinds
    assert all(len(r["seeds"]) == 2 for r in nb["rows"] if r["kind"] != "dense")
    hashed = next(r for r in nb["rows"] if r["kind"] == "hashed-isoparam-depth")
    assert 0.0 <= hashed["collision_rate"] <= 1.0
    assert any("codebooks-only" in v for v in nb["verdict"])
    assert "## What the numbers say" in neighbours_text(nb)


def test_the_verdict_calls_no_gap_a_win_or_a_loss_before_a_seed_spread_exists():
    from leviathan_explore.analysis.study import verdict

    row = {"size": "d32", "gap_isoparam": 0.178, "multiplier": None, "multiplier_ci": [None, None],
           "bucket_gaps_isoparam": {"rare": None, "frequent": None}}
    before = " ".join(verdict({"sweeps": {"main": [row]}, "seed_spread_max": None}))
    assert "d32 +0.178; no seed spread was measured yet, so no gap can be called a win or a loss" in before
    assert "within it" not in before
    after = " ".join(verdict({"sweeps": {"main": [row]}, "seed_spread_max": 0.02}))
    assert "loses beyond it at 1 (d32)" in after
    tie = " ".join(verdict({"sweeps": {"main": [dict(row, gap_isoparam=0.01)]}, "seed_spread_max": 0.02}))
    assert "the rest (d32) are within it" in tie


def test_before_the_long_sweep_runs_the_gap_during_training_comes_from_mains_curves(quick_studies, tmp_path):
    import shutil

    study = tmp_path / "laptop-study-quick"
    shutil.copytree(quick_studies / "laptop-study-quick", study, ignore=shutil.ignore_patterns("data", "checkpoints"))
    full = study_report(study, n_boot=20)["gap_vs_tokens"]
    assert full["sweep"] == "long"
    shutil.rmtree(study / "long")  # the long sweep has not run yet
    report = study_report(study, n_boot=20)
    g = report["gap_vs_tokens"]
    assert g["sweep"] == "main" and g["size"] == full["size"] and g["points"]
    assert g["dense"]["tokens"] < full["dense"]["tokens"]  # main's runs are the shorter ones
    assert "the 4x longer sweep has not run" in format_report(report)
    assert any(v.startswith("The 4x longer sweep has not run; in main's runs at width") for v in report["verdict"])


def test_the_neighbours_verdict_pairs_seeds_and_gives_intervals():
    from leviathan_explore.analysis.neighbours import verdict as neighbours_verdict

    def row(kind, losses, gap, mult=None, ci=None):
        return {"size": "d32", "kind": kind, "losses": losses, "mean_gap": gap, "mean_rare_gap": gap / 2,
                "seed_spread": (max(losses.values()) - min(losses.values())) if len(losses) > 1 else None,
                "multiplier": mult, "multiplier_ci": ci}

    dense = row("dense", {0: 5.0, 1: 5.02}, 0.0)
    lev = row("lev-isoparam-depth", {0: 5.2, 1: 5.21}, 0.2, 0.5, [0.3, 0.6])
    cb = row("codebooks-isoparam-depth", {0: 5.5}, 0.5, 0.2, [0.1, 0.3])
    text = " ".join(neighbours_verdict({"rows": [dense, lev, cb]}))
    # paired on seed 0 only (codebooks has no seed 1 yet): 5.2 - 5.5, not the means' difference
    assert "-0.300 nats, mean over seeds (seed 0 -0.300)" in text
    assert "help" in text and "Leviathan 0.50x [0.30, 0.60], codebooks-only 0.20x [0.10, 0.30]" in text
    # the rankings are written even when there is no pair to compare
    alone = " ".join(neighbours_verdict({"rows": [dense, lev]}))
    assert "codebooks-only" not in alone and "rare targets, best first" in alone
    # a choice at its grid's edge is named
    edged = dict(cb, lr_at_edge=True)
    assert "edge of its searched grid (the best may lie beyond it, so these models may be under-tuned): " \
        "d32 codebooks-isoparam-depth." in " ".join(neighbours_verdict({"rows": [dense, lev, edged]}))
    assert "edge of its searched grid" not in text
    # with no seed spread, no difference is called one
    single = [row("dense", {0: 5.0}, 0.0), row("lev-isoparam-depth", {0: 5.2}, 0.2),
              row("codebooks-isoparam-depth", {0: 5.5}, 0.5)]
    assert "cannot be judged yet" in " ".join(neighbours_verdict({"rows": single}))


def _two_sweep_plan(copy_from: str = "main") -> dict:
    return {"name": "t", "preset": "cpu-tiny", "train": {"steps": 2, "batch_size": 1, "seq_len": 8},
            "sweeps": [{"name": "main", "corpus": "python-stdlib-compact", "lr_grid": [1e-3, 3e-3, 1e-2],
                        "lr_endpoints": ["a", "c"],
                        "sizes": [{"name": "a", "model": {"d_model": 32, "n_heads": 2}},
                                  {"name": "c", "model": {"d_model": 128, "n_heads": 2}},
                                  {"name": "b", "model": {"d_model": 64, "n_heads": 2}, "lr_rule": "interpolate"}]},
                       {"name": "copy", "corpus": "python-stdlib-compact", "seed": 1,
                        "sizes": [{"name": "b", "model": {"d_model": 64, "n_heads": 2},
                                   "lr_rule": {"from": copy_from}}]}]}


def test_a_walking_worker_waits_for_a_live_claim_then_takes_it_over_and_finishes_the_plan(tmp_path, monkeypatch):
    import subprocess
    import sys
    import threading

    from leviathan_explore.analysis import study as study_module
    from test_sweep import FakeTrain

    plan = _two_sweep_plan()
    monkeypatch.setattr(study_module, "_sweep_data", lambda sw, root, log: (Path("data"), 4097))
    # another worker (a live process) holds main's a-dense: b (interpolated from a and c) and copy wait on it
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3)"])
    threading.Thread(target=other.wait, daemon=True).start()  # reaped as soon as it exits
    (tmp_path / "main" / ".claims").mkdir(parents=True)
    (tmp_path / "main" / ".claims" / "a-dense").write_text(str(other.pid))
    lines, fake = [], FakeTrain()
    study_module.walk_study(tmp_path, plan=plan, log=lines.append, poll_s=0.2, train_fn=fake)
    assert other.poll() is not None  # it returned only after the claim's owner had gone
    assert any("waiting for main (b); copy (b)" in line for line in lines)
    main_sel = json.loads((tmp_path / "main" / "selected.json").read_text())["models"]
    assert set(main_sel) == {"a-dense", "b-dense", "c-dense"}
    assert json.loads((tmp_path / "copy" / "selected.json").read_text())["models"]["b-dense"]["lr"] == \
        main_sel["b-dense"]["lr"]
    trained = [str(Path(c.out_dir).relative_to(tmp_path)) for c in fake.calls]
    assert len(trained) == len(set(trained)) == 3 + 3 + 1 + 1  # a and c searched, b once, copy once


def test_a_walking_worker_stops_with_one_line_when_a_rule_can_never_be_met(tmp_path, monkeypatch):
    from leviathan_explore.analysis import study as study_module
    from test_sweep import FakeTrain

    monkeypatch.setattr(study_module, "_sweep_data", lambda sw, root, log: (Path("data"), 4097))
    with pytest.raises(ConfigError, match=r"study\.sweeps\.copy.*no size can run"):
        study_module.walk_study(tmp_path, plan=_two_sweep_plan(copy_from="nowhere"), log=lambda _: None,
                                poll_s=60.0, train_fn=FakeTrain())  # no live claim: no 60 s wait either
    assert json.loads((tmp_path / "main" / "selected.json").read_text())["models"]  # main itself ran


def test_two_workers_give_the_runs_one_worker_gives(quick_studies, tmp_path):
    one = quick_studies / "laptop-study-quick" / "main"
    assert main(["study", "run", str(LAPTOP), "--quick", "--out", str(tmp_path / "q"), "--workers", "2",
                 "--only", "main"]) == 0
    two = json.loads((tmp_path / "q" / "main" / "selected.json").read_text())["models"]
    ref = json.loads((one / "selected.json").read_text())["models"]
    assert set(two) == set(ref)
    for key, entry in ref.items():  # the same choices and the same losses, whichever worker ran them
        assert two[key]["lr"] == entry["lr"], key
        assert two[key]["val_loss"] == pytest.approx(entry["val_loss"], rel=1e-6), key
    assert not list((tmp_path / "q" / "main" / ".claims").glob("*"))  # every claim released
