"""The sweep runner: grid validation, learning-rate choice, skipping finished runs, resuming, extending."""

from __future__ import annotations

import json
import os
import math
from pathlib import Path

import pytest

from leviathan_explore.analysis.sweep import SweepStopped, lr_text, parse_grid, run_sweep
from leviathan_explore.cli import main
from leviathan_explore.config import ConfigError
from leviathan_explore.training.trainer import TrainingDiverged

BEST_LR = {"dense": 3e-3, "leviathan": 1e-3}


def grid(**changes) -> dict:
    g = {"name": "t", "preset": "cpu-tiny", "seed": 0,
         "train": {"steps": 4, "batch_size": 2, "seq_len": 8, "eval_every": 2, "eval_batches": 1,
                   "device": "cpu"},
         "lr_grid": [1e-3, 3e-3, 1e-2],
         "sizes": [{"name": "d32", "model": {"d_model": 32, "n_heads": 4},
                    "leviathan": [{"match": "isoparam", "by": "depth"}]}]}
    g.update(changes)
    return g


class FakeTrain:
    """Writes the run files a real run would; the loss is a parabola in log(lr) around BEST_LR[arch]."""

    def __init__(self, diverge_above: float = 1.0, stop: set[str] = frozenset()):
        self.calls: list = []
        self.diverge_above, self.stop = diverge_above, stop

    def __call__(self, cfg):
        self.calls.append(cfg)
        out = Path(cfg.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        loss = 3.0 + (math.log(cfg.lr) - math.log(BEST_LR[cfg.arch])) ** 2
        summary = {"name": out.name, "arch": cfg.arch, "match": cfg.match, "lr": cfg.lr,
                   "final_val_loss": loss, "finished": True, "stopped_early": False}
        if cfg.lr > self.diverge_above:
            summary.update(final_val_loss=None, finished=False, stopped_early=True, error="loss is nan at step 3")
            (out / "summary.json").write_text(json.dumps(summary))
            raise TrainingDiverged("loss is nan at step 3")
        if out.name in self.stop:
            summary.update(finished=False, stopped_early=True, interrupted_by="SIGINT")
        (out / "summary.json").write_text(json.dumps(summary))
        return summary


def test_every_model_gets_its_lr_search_and_best_is_selected(tmp_path):
    fake = FakeTrain()
    sel = run_sweep(grid(), "data", tmp_path, train_fn=fake, progress=False)
    assert len(fake.calls) == 6
    # same shared schedule and seed for every run; only model and lr differ
    assert {(c.steps, c.batch_size, c.seq_len, c.seed) for c in fake.calls} == {(4, 2, 8, 0)}
    assert sel["models"]["d32-dense"]["lr"] == 3e-3
    assert sel["models"]["d32-dense"]["lr_at_edge"] is False
    lev = sel["models"]["d32-lev-isoparam-depth"]
    assert lev["lr"] == 1e-3 and lev["lr_at_edge"] is True and lev["run"] == "d32-lev-isoparam-depth-lr0.001"
    assert json.loads((tmp_path / "selected.json").read_text()) == json.loads(json.dumps(sel))
    assert (tmp_path / "grid.json").is_file()


def test_rerun_skips_finished_runs_and_extension_runs_only_new_ones(tmp_path):
    run_sweep(grid(), "data", tmp_path, train_fn=FakeTrain(), progress=False)
    again = FakeTrain()
    run_sweep(grid(), "data", tmp_path, train_fn=again, progress=False)
    assert again.calls == []
    bigger = grid()
    bigger["sizes"].append({"name": "d64", "model": {"d_model": 64, "n_heads": 4}})
    more = FakeTrain()
    sel = run_sweep(bigger, "data", tmp_path, train_fn=more, progress=False)
    assert sorted(Path(c.out_dir).name for c in more.calls) == [
        "d64-dense-lr0.001", "d64-dense-lr0.003", "d64-dense-lr0.01"]
    assert set(sel["models"]) == {"d32-dense", "d32-lev-isoparam-depth", "d64-dense"}


def test_unfinished_run_is_resumed(tmp_path):
    (tmp_path / "runs" / "d32-dense-lr0.003").mkdir(parents=True)  # a run killed before its summary
    fake = FakeTrain()
    run_sweep(grid(), "data", tmp_path, train_fn=fake, progress=False)
    resumed = {Path(c.out_dir).name: c.resume for c in fake.calls}
    assert resumed["d32-dense-lr0.003"] is True and resumed["d32-dense-lr0.001"] is False


def test_lr_extension_past_the_edge(tmp_path):
    fake = FakeTrain()
    sel = run_sweep(grid(lr_extend=2), "data", tmp_path, train_fn=fake, progress=False)
    lev = sel["models"]["d32-lev-isoparam-depth"]
    # 1e-3 is the true optimum: one step below it (3.16e-4) is tried, then the search stops
    assert [c["lr"] for c in lev["candidates"]] == [float(lr_text(1e-3 / math.sqrt(10))), 1e-3, 3e-3, 1e-2]
    assert lev["lr"] == 1e-3 and lev["lr_at_edge"] is False
    assert len(fake.calls) == 7


def test_diverged_runs_lose_the_lr_search_and_are_not_rerun(tmp_path):
    sel = run_sweep(grid(), "data", tmp_path, train_fn=FakeTrain(diverge_above=5e-3), progress=False)
    cands = {c["lr"]: c for c in sel["models"]["d32-dense"]["candidates"]}
    assert cands[1e-2]["status"] == "diverged" and cands[1e-2]["val_loss"] is None
    assert sel["models"]["d32-dense"]["lr"] == 3e-3
    again = FakeTrain(diverge_above=5e-3)
    run_sweep(grid(), "data", tmp_path, train_fn=again, progress=False)
    assert again.calls == []


def test_interrupted_run_stops_the_sweep(tmp_path):
    fake = FakeTrain(stop={"d32-dense-lr0.003"})
    with pytest.raises(SweepStopped, match="d32-dense-lr0.003 stopped before its last step"):
        run_sweep(grid(), "data", tmp_path, train_fn=fake, progress=False)
    assert len(fake.calls) == 2


def test_changing_the_shared_schedule_is_refused(tmp_path):
    run_sweep(grid(), "data", tmp_path, train_fn=FakeTrain(), progress=False)
    changed = grid()
    changed["train"]["steps"] = 8
    with pytest.raises(ConfigError, match="grid.train.steps"):
        run_sweep(changed, "data", tmp_path, train_fn=FakeTrain(), progress=False)


def test_token_budget_becomes_steps():
    g = grid()
    del g["train"]["steps"]
    g["train"]["tokens"] = 100  # 2 x 8 = 16 tokens per step -> ceil(100 / 16) = 7 steps
    assert parse_grid(g).train["steps"] == 7


@pytest.mark.parametrize("changes,match", [
    ({"lr_grid": [1e-3, 3e-3]}, "grid.lr_grid"),
    ({"lr_grid": [3e-3, 1e-3, 1e-2]}, "strictly increasing"),
    ({"colour": "red"}, "grid.colour"),
    ({"sizes": []}, "grid.sizes"),
    ({"sizes": [{"name": "a", "leviathan": [{"match": "iso"}]}]}, r"leviathan\[0\].match"),
    ({"sizes": [{"name": "a", "model": {"d_model": 30, "n_heads": 4}}]}, "n_heads"),
    ({"sizes": [{"name": "a", "model": {"depth": 3}}]}, "unknown setting"),
    ({"sizes": [{"name": "a"}, {"name": "a"}]}, "names a model twice"),
    ({"train": {"steps": 4, "batch_size": 2, "seq_len": 8, "lr": 1e-3}}, "grid.train.lr"),
    ({"train": {"steps": 4, "batch_size": 2}}, "grid.train.seq_len"),
    ({"preset": "huge"}, "grid.preset"),
])
def test_bad_grids_name_the_key(changes, match):
    with pytest.raises(ConfigError, match=match):
        parse_grid(grid(**changes))


def test_sweep_cli_bad_grid_is_one_line(tmp_path, capsys):
    path = tmp_path / "grid.json"
    path.write_text(json.dumps(grid(lr_grid=[1e-3, 3e-3])))  # two values: neither a search nor a fixed lr
    assert main(["sweep", str(path), "--data", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "grid.lr_grid" in err
    path.write_text("{not json")
    assert main(["sweep", str(path), "--data", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_real_trainer_sweep_then_fit(tmp_path, capsys):
    """Three tiny sizes, one Leviathan match, three learning rates, two steps: through the real
    trainer, then rerun (nothing retrained), then ``fit`` on the selected runs."""
    from leviathan_explore.data import build_corpus

    docs = tmp_path / "docs"
    docs.mkdir()
    for j in range(10):
        (docs / f"{j}.txt").write_text("".join(f"def f{i}(x):\n    return x * {i} + {j}\n" for i in range(40)))
    data = tmp_path / "data"
    build_corpus("files", data, glob=str(docs / "*.txt"), tokenizer="gpt2", compact=64, val_fraction=0.2,
                 progress=False)
    g = grid(train={"steps": 2, "batch_size": 2, "seq_len": 16, "eval_every": 2, "eval_batches": 1,
                    "checkpoint_every": 2, "device": "cpu", "progress": False})
    g["sizes"] = [{"name": f"d{d}", "model": {"d_model": d, "n_layers": 1, "n_heads": 2}} for d in (8, 12, 16)]
    # by SwiGLU width: at this size one layer is half the model, so no depth comes within 5%;
    # and a generator small beside the 65 x 12 table it replaces
    g["sizes"][1]["leviathan"] = [{"match": "isoparam", "by": "ffn"}]
    g["sizes"][1]["model"]["leviathan"] = {"d_seed": 2, "n_modes": 1, "n_knots": 3, "rank": 1}
    grid_path = tmp_path / "grid.json"
    grid_path.write_text(json.dumps(g))
    out = tmp_path / "sweep"
    assert main(["sweep", str(grid_path), "--data", str(data), "--out", str(out), "--no-progress"]) == 0
    runs = sorted(p.name for p in (out / "runs").iterdir())
    assert len(runs) == 12 and all((out / "runs" / r / "summary.json").is_file() for r in runs)
    mtimes = {r: (out / "runs" / r / "summary.json").stat().st_mtime_ns for r in runs}
    assert main(["sweep", str(grid_path), "--data", str(data), "--out", str(out), "--no-progress"]) == 0
    assert {r: (out / "runs" / r / "summary.json").stat().st_mtime_ns for r in runs} == mtimes
    # a changed model under an unchanged run name is refused, not silently reused
    g["sizes"][0]["model"]["n_layers"] = 2
    grid_path.write_text(json.dumps(g))
    assert main(["sweep", str(grid_path), "--data", str(data), "--out", str(out), "--no-progress"]) == 2
    assert "runs/d8-dense-lr0.001 model_config.n_layers=1 is invalid" in capsys.readouterr().err
    assert main(["fit", str(out), "--json", "--n-boot", "20"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["dense"]) == 3 and len(report["leviathan"]) == 1
    assert report["leviathan"][0]["matched_dense"].startswith("d12-dense-lr")


@pytest.mark.parametrize("path", ["results/sweeps/cpu-stdlib/grid.json", "results/sweeps/gpu-grid.json"])
def test_committed_grids_are_valid(path):
    from leviathan_explore.analysis.sweep import load_grid

    g = load_grid(Path(__file__).resolve().parents[1] / path)
    assert sum(m.arch == "dense" for m in g.models) >= 4
    assert sum(m.match == "isoparam" for m in g.models) >= 3
    assert all(len(m.lr_grid) >= 3 for m in g.models)


def test_selected_json_stays_complete_while_a_sweep_is_revisited(tmp_path):
    run_sweep(grid(), "data", tmp_path, train_fn=FakeTrain(), progress=False)
    seen = []

    def peek(cfg):  # the Leviathan extension runs after both models were chosen once: both stay listed
        seen.append(set(json.loads((tmp_path / "selected.json").read_text())["models"]))
        return FakeTrain()(cfg)

    run_sweep(grid(lr_extend=1), "data", tmp_path, train_fn=peek, progress=False)
    assert seen and all(s == {"d32-dense", "d32-lev-isoparam-depth"} for s in seen)


WORKER_SCRIPT = """
import json, math, os, sys, time
from pathlib import Path
from leviathan_explore.analysis.sweep import run_sweep

def fake(cfg):
    out = Path(cfg.out_dir); out.mkdir(parents=True, exist_ok=True)
    time.sleep(0.2)  # long enough for the other worker to look at the same model
    with open(sys.argv[3], "a") as fh:
        fh.write(f"{os.getpid()} {out.name}\\n")
    loss = 3.0 + (math.log(cfg.lr) - math.log(0.003)) ** 2
    (out / "summary.json").write_text(json.dumps({"name": out.name, "arch": cfg.arch, "lr": cfg.lr,
        "final_val_loss": loss, "finished": True, "stopped_early": False}))
    return {}

run_sweep(json.loads(sys.argv[1]), "data", sys.argv[2], train_fn=fake, progress=False, claim=True)
"""


def test_two_workers_share_a_sweep_each_model_trained_once(tmp_path):
    import subprocess
    import sys

    g = grid(sizes=[{"name": f"d{d}", "model": {"d_model": d, "n_heads": 4},
                     "leviathan": [{"match": "isoparam", "by": "ffn"}]} for d in (16, 24, 32)])
    log = tmp_path / "trained.txt"
    procs = [subprocess.Popen([sys.executable, "-c", WORKER_SCRIPT, json.dumps(g), str(tmp_path / "s"), str(log)])
             for _ in range(2)]
    assert [p.wait(120) for p in procs] == [0, 0]
    lines = [ln.split() for ln in log.read_text().splitlines()]
    runs = [name for _, name in lines]
    assert sorted(runs) == sorted(set(runs)) and len(runs) == 6 * 3  # 6 models x 3 learning rates, once each
    assert len({pid for pid, _ in lines}) == 2  # both workers took part
    selected = json.loads((tmp_path / "s" / "selected.json").read_text())
    assert len(selected["models"]) == 6 and all(m["lr"] == 0.003 for m in selected["models"].values())
    assert not any((tmp_path / "s" / ".claims").iterdir())  # every claim released


def test_a_claim_left_by_a_dead_worker_is_taken_over(tmp_path):
    from leviathan_explore.analysis.sweep import CLAIMS, claim_model

    (tmp_path / CLAIMS).mkdir()
    (tmp_path / CLAIMS / "d32-dense").write_text("999999999")  # no such process
    assert claim_model(tmp_path, "d32-dense")
    (tmp_path / CLAIMS / "d32-lev").write_text(str(os.getppid()))  # a live process holds it
    assert not claim_model(tmp_path, "d32-lev")


def test_variants_can_be_other_representations_and_labelled_ablations():
    from leviathan_explore.analysis.sweep import parse_grid, run_config
    from leviathan_explore.training.trainer import build_model_config

    g = grid(sizes=[{"name": "d32", "model": {"d_model": 32, "n_heads": 4, "leviathan": {"d_seed": 8}},
                     "leviathan": [{"match": "isoparam"},
                                   {"match": "isoparam", "repr": "hashed", "model": {"hash_buckets": 64}},
                                   {"match": "isobody", "repr": "factorized"},
                                   {"match": "isoparam", "label": "rank1", "model": {"leviathan": {"rank": 1}}}]}])
    parsed = parse_grid(g)
    keys = [m.key for m in parsed.models]
    assert keys == ["d32-dense", "d32-lev-isoparam-depth", "d32-hashed-isoparam-depth", "d32-factorized-isobody",
                    "d32-rank1-isoparam-depth"]
    cfgs = {m.key: build_model_config(run_config(parsed, m, 1e-3, "", ""), 4097) for m in parsed.models}
    assert cfgs["d32-hashed-isoparam-depth"].token_repr == "hashed" and cfgs["d32-hashed-isoparam-depth"].hash_buckets == 64
    assert cfgs["d32-factorized-isobody"].n_layers == cfgs["d32-dense"].n_layers
    rank1 = cfgs["d32-rank1-isoparam-depth"].leviathan
    assert rank1.rank == 1 and rank1.d_seed == 8  # the variant's setting over the size's, one level deep
    with pytest.raises(ConfigError, match="repr"):
        parse_grid(grid(sizes=[{"name": "d32", "model": {}, "leviathan": [{"match": "isoparam", "repr": "lstm"}]}]))


def test_a_run_saved_before_a_setting_existed_is_reused_when_the_setting_is_at_its_default():
    from leviathan_explore.analysis.sweep import _check_same_model, parse_grid, run_config
    from leviathan_explore.training.trainer import build_model_config

    g = parse_grid(grid())
    model = g.models[1]  # the Leviathan
    cfg = run_config(g, model, 1e-3, "", "")
    saved = build_model_config(cfg, 4097).to_dict()
    for key in ("factorized_dim", "hash_buckets", "hash_functions", "hash_seed"):
        saved.pop(key)
    saved["leviathan"].pop("layer_norm")
    _check_same_model("old-run", {"model_config": saved}, cfg, 4097)  # no error
    saved["leviathan"]["rank"] = 3
    with pytest.raises(ConfigError, match="model_config.leviathan.rank"):
        _check_same_model("old-run", {"model_config": saved}, cfg, 4097)
