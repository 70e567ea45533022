"""Dashboard tabs without a browser: they construct, react to their inputs, share one
state, and turn bad input into in-page messages; run paths stay inside the runs directory."""

import json
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from leviathan_explore.analysis.registry import dense_partner, scan_runs
from leviathan_explore.dashboard import geometry as geometry_module
from leviathan_explore.dashboard.allocation import AllocationTab
from leviathan_explore.dashboard.anatomy import AnatomyTab
from leviathan_explore.dashboard.app import ExplorerApp
from leviathan_explore.dashboard.common import md_escape, safe_run_dir
from leviathan_explore.dashboard.geometry import GeometryTab
from leviathan_explore.dashboard.scaling import RUNS, ScalingTab
from leviathan_explore.dashboard.sources import DEMO, RUN_PREFIX, UNTRAINED, load_source, source_options
from leviathan_explore.dashboard.state import ExplorerState
from leviathan_explore.dashboard.train import TrainTab


def plain(markdown: str) -> str:
    """What a reader sees of escaped Markdown: the backslash escapes and bold markers removed."""
    return re.sub(r"\\(.)", r"\1", markdown).replace("**", "")


# ---- run paths --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["", "   ", "../escape", "a/../../b", "/etc", "a//b", ".hidden", "a/./b",
                                  "a b", "x\\..\\y", "C:/windows", "a/" + "b" * 101])
def test_safe_run_dir_refuses_names_that_could_escape(tmp_path, name):
    with pytest.raises(ValueError):
        safe_run_dir(tmp_path, name)


def test_safe_run_dir_accepts_plain_names_and_refuses_symlinks(tmp_path):
    assert safe_run_dir(tmp_path, "job-1") == tmp_path.resolve() / "job-1"
    assert safe_run_dir(tmp_path, " job/dense ") == tmp_path.resolve() / "job" / "dense"
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (tmp_path / "link").symlink_to(outside)
    with pytest.raises(ValueError, match="symbolic link"):
        safe_run_dir(tmp_path, "link/dense")


def _summary(name, arch, total, loss, *, content_hash="h", match=None):
    body = total // 2
    return {"name": name, "arch": arch, "match": match, "match_by": "depth", "preset": "cpu-tiny",
            "model_config": {"vocab_size": 100, "n_layers": 2, "d_model": 8},
            "params": {"embedding": 0 if arch == "leviathan" else total // 4, "generator": total // 4 if
                       arch == "leviathan" else 0, "body": body, "head": total - body - total // 4,
                       "n_layers": 2, "d_model": 8},
            "steps": 10, "tokens_seen": 1000, "final_val_loss": loss,
            "final_val_ppl": None if loss is None else float(np.exp(loss)),
            "bucket_losses": None if loss is None else {"frequent": loss - 1, "medium": loss, "rare": loss + 1},
            "mean_tokens_per_s": 100.0,
            "wall_time_s": 1.0, "lr": 1e-3, "hardware": {"device": "cpu"},
            "data": {"dir": "nowhere", "tokenizer": "gpt2", "vocab_size": 100, "content_hash": content_hash},
            "stopped_early": False, "finished": True}


def _write_run(root: Path, rel: str, summary: dict) -> Path:
    d = root / rel
    d.mkdir(parents=True)
    (d / "summary.json").write_text(json.dumps(summary))
    (d / "metrics.jsonl").write_text("")
    return d


def test_scan_runs_reports_corrupt_summaries_and_finds_pairs(tmp_path):
    _write_run(tmp_path, "job/dense", _summary("dense", "dense", 1000, 5.0))
    _write_run(tmp_path, "job/leviathan", _summary("leviathan", "leviathan", 1000, 4.9))
    bad = tmp_path / "broken"
    bad.mkdir()
    (bad / "summary.json").write_text("{not json")
    runs, problems = scan_runs(tmp_path)
    assert sorted(r.name for r in runs) == ["job/dense", "job/leviathan"]
    assert len(problems) == 1 and "broken" in problems[0] and "corrupt" in problems[0]
    lev = next(r for r in runs if r.arch == "leviathan")
    assert dense_partner(lev, runs).name == "job/dense"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        scan_runs(tmp_path / "missing")


def test_load_source_refuses_escaping_run_names(tmp_path):
    with pytest.raises(ValueError):
        load_source(RUN_PREFIX + "../outside", tmp_path)
    with pytest.raises(ValueError):
        load_source("bogus", tmp_path)
    options, problems = source_options(tmp_path / "missing")
    assert UNTRAINED in options.values() and "does not exist" in problems[0]


# ---- allocation --------------------------------------------------------------------------------

def test_allocation_tab_reacts_and_reports_bad_vocabulary():
    from leviathan_explore.analysis.allocation import allocation_report

    tab = AllocationTab()
    tab.__panel__()
    assert "102,409,728" in tab.numbers.object  # o200k x 512
    before = tab.numbers.object
    tab.d_model = 256
    assert tab.numbers.object != before and "51,204,864" in tab.numbers.object
    assert tab.bars.object is not None and tab.share.object is not None
    tab.tokenizer = "custom"
    tab.custom_vocab = 32_000
    for bad in ("0", "1000000000", "", "-5", "1e3", "abc", "9" * 5000):
        tab.vocab_field.input.value = bad
        note = plain(tab.vocab_field.note.object)
        assert tab.vocab_field.note.visible and "custom vocabulary size" in note and "1 to 10,000,000" in note
        assert tab.custom_vocab == 32_000 and tab.report["dense"]["vocab_size"] == 32_000  # never used
    tab.vocab_field.input.value = "4,097"
    assert not tab.vocab_field.note.visible and tab.report["dense"]["vocab_size"] == 4097
    tab.n_heads = 7  # 256 % 7 != 0
    assert tab.error.visible and "n_heads" in plain(tab.error.object)
    assert tab.report is None and tab.numbers.object == "" and not tab.bars.visible
    tab.n_heads = 8
    assert not tab.error.visible and tab.bars.visible
    # a 4,097-id vocabulary: no depth matches, and the page shows the library's sentence
    expected = allocation_report(vocab_size=4097, d_model=256, n_layers=6, n_heads=8, tied=False,
                                 generator=dict(k=3, d_seed=128, n_modes=8, n_knots=32, rank=64))
    assert "error" in expected["leviathan_isoparam"]
    assert expected["leviathan_isoparam"]["error"] in plain(tab.summary.object)
    assert "data-model='leviathan_isoparam'" not in tab.numbers.object
    tab.custom_vocab = 32_000
    tab.match_by = "ffn"
    assert "SwiGLU hidden size" in tab.summary.object


def test_allocation_tab_explains_the_head_the_tied_case_and_the_backbone():
    tab = AllocationTab(d_model=256)
    text = plain(tab.summary.object)
    r = tab.report
    assert "The head remains" in text and f"{r['leviathan_isobody']['head']:,}" not in text  # shown as 51.2M
    assert "Identical backbone" in text and "same Leviathan model" in text
    assert f"{100 * r['leviathan_backbone']['relative_gap']:+.1f}%" in text
    assert "Tied case" not in text and "data-model='dense_tied'" in tab.numbers.object
    tab.tied = True
    r = tab.report
    text = plain(tab.summary.object)
    assert "Tied case" in text and r["leviathan_isobody"]["total"] > r["dense"]["total"]
    assert f"{100 * r['leviathan_isobody']['relative_gap']:+.1f}%" in text and "larger" in text
    assert "data-model='dense_tied'" not in tab.numbers.object  # the dense model is the tied one
    marks = [t for t in tab.share.object.data if t.name == "your model"]
    assert len(marks) == 1 and marks[0].x[0] == r["dense"]["total"]
    assert marks[0].y[0] == pytest.approx(100 * r["dense"]["embedding"] / r["dense"]["total"])


# ---- anatomy ----------------------------------------------------------------------------------

def test_anatomy_tab_traces_tokens_and_rejects_empty_text(tmp_path):
    tab = AnatomyTab(ExplorerState(tmp_path / "no-runs"))
    tab.__panel__()
    assert tab.figs["codebook"].object is None  # nothing computed before the tab is opened
    tab.activate()
    assert "does not exist" in plain(tab.notice.object)
    assert tab.state.source == DEMO and tab.pieces and tab.figs["embedding"].visible  # no runs: the demo
    for empty in ("", "   \n "):
        tab.text = empty
        assert tab.error.visible and "empty or only whitespace" in plain(tab.error.object)
        assert not tab.figs["codebook"].visible and tab.pieces == []
    tab.state.choose_source(UNTRAINED)
    tab.text = "hello world"
    assert not tab.error.visible and [p.text for p in tab.pieces] == ["hello", " world"]
    first = tab.trace.token_id
    tab.token_select.value = 1
    assert tab.trace.text == " world" and tab.trace.token_id != first
    before = tab.figs["bspline"].object
    tab.coordinate = 5
    assert tab.figs["bspline"].object is not before


def test_anatomy_tab_explains_unknown_ids_and_truncation(tmp_path):
    from leviathan_explore.data import UNK_TEXT

    tab = AnatomyTab(ExplorerState(tmp_path))
    tab.activate()
    assert tab.state.source == DEMO  # the shipped 4,096-id vocabulary
    tab.text = "The quick brown fox jumps over the lazy dog near the riverbank."
    unknown = [p for p in tab.pieces if p.text == UNK_TEXT]
    assert unknown, "the compact vocabulary should miss some words of this sentence"
    note = plain(tab.unknown_note.object)
    assert tab.unknown_note.visible and f"{len(unknown)} of {len(tab.pieces)} tokens are unknown" in note
    assert tab.tokens_view.object.count("token-unknown") == len(unknown)
    tab.state.choose_source(UNTRAINED)  # o200k covers any text: nothing unknown, no note
    assert not [p for p in tab.pieces if p.text == UNK_TEXT] and not tab.unknown_note.visible
    tab.text = "word " * 400
    n = len(tab.state.embeddings.encode(tab.text))
    assert n > 256 and len(tab.pieces) == 256
    assert f"it has {n:,} tokens; the first 256" in plain(tab.unknown_note.object)
    assert f"256 of {n} tokens" in tab.tokens_view.object


def test_anatomy_and_geometry_share_one_source(tmp_path):
    state = ExplorerState(tmp_path)
    anatomy, geometry = AnatomyTab(state), GeometryTab(state, sample_size=60)
    anatomy.activate()
    geometry.activate()
    assert geometry.sample.source is anatomy.state.embeddings
    geometry.source_select.value = UNTRAINED  # chosen in one tab ...
    assert anatomy.source_select.value == UNTRAINED and state.embeddings.name == "untrained"  # ... shown in both
    assert geometry.sample.source is state.embeddings


# ---- geometry ---------------------------------------------------------------------------------

def test_geometry_tab_maps_neighbours_and_messages(tmp_path, monkeypatch):
    tab = GeometryTab(ExplorerState(tmp_path / "no-runs"), sample_size=60)
    tab.__panel__()
    tab.activate()
    assert "does not exist" in plain(tab.notice.object)
    tab.state.choose_source(UNTRAINED)
    assert tab.sample is not None and len(tab.sample.ids) == 60
    assert set(tab.sample.vectors) == {"generated", "dense"}
    fig = tab.map.object
    assert fig is not None and "PCA of generated" in fig.layout.title.text
    tab.colour_by = "first digit"
    assert "first digit" in tab.map.object.layout.title.text
    tab.space = "dense"
    assert "dense table" in tab.map.object.layout.title.text
    table = tab.neighbours.object.data[0]
    assert len(table.cells.values[1]) == tab.k and table.header.values[3] == "dense table: token"
    assert all(v.startswith("'") for v in table.cells.values[1])
    tab.query = "   "
    assert tab.query_error.visible and not tab.neighbours.visible
    tab.query = " the"
    assert not tab.query_error.visible and tab.neighbours.visible
    assert "\u2423the" in tab.neighbours.object.layout.title.text  # the leading space is shown
    assert tab.spread.object is not None
    for bad in ("10", "99999", "", "-1", "abc"):
        tab.sample_field.input.value = bad
        assert tab.sample_field.note.visible and "50 to 5,000" in plain(tab.sample_field.note.object)
        assert tab.sample_size == 60 and len(tab.sample.ids) == 60  # the shown sample is the one used
    tab.sample_field.input.value = "80"
    assert len(tab.sample.ids) == 80 and not tab.sample_field.note.visible

    # UMAP runs in a worker thread; a stand-in keeps the test fast (umap_2d has its own test)
    monkeypatch.setattr(geometry_module, "umap_2d", lambda x, **kw: np.asarray(x)[:, :2] * 1.0)
    tab.start_umap()
    assert tab.method == "UMAP" and "UMAP of dense table" in tab.map.object.layout.title.text
    monkeypatch.setattr(geometry_module, "umap_2d", lambda x, **kw: (_ for _ in ()).throw(ValueError("boom")))
    tab.space = "generated"
    tab.start_umap()
    assert tab.error.visible and "UMAP failed: boom" in plain(tab.error.object)


def test_geometry_tab_reports_a_corrupt_run_summary(tmp_path):
    bad = tmp_path / "bad-run"
    bad.mkdir()
    (bad / "summary.json").write_text("[1, 2")
    tab = GeometryTab(ExplorerState(tmp_path), sample_size=50)
    tab.activate()
    assert tab.notice.visible and "bad-run" in plain(tab.notice.object) and "corrupt" in plain(tab.notice.object)
    assert tab.sample is not None  # the page still shows something


# ---- scaling ----------------------------------------------------------------------------------

def test_scaling_tab_missing_corrupt_and_fitted(tmp_path, monkeypatch):
    from leviathan_explore.dashboard import scaling as scaling_module

    monkeypatch.setattr(scaling_module, "N_BOOT", 50)  # the band's resamples; fewer keep the test quick
    no_studies = tmp_path / "no-sweeps"  # results/sweeps holds a study: the tab would open on it
    missing = ScalingTab(ExplorerState(tmp_path / "missing"), sweeps_root=no_studies)
    missing.activate()
    missing.source = RUNS
    assert missing.error.visible and "does not exist" in plain(missing.error.object)

    corrupt_dir = tmp_path / "corrupt"
    (corrupt_dir / "r1").mkdir(parents=True)
    (corrupt_dir / "r1" / "summary.json").write_text("{")
    corrupt = ScalingTab(ExplorerState(corrupt_dir), sweeps_root=no_studies)
    corrupt.activate()
    corrupt.source = RUNS
    assert corrupt.error.visible and "summary.json" in plain(corrupt.error.object)

    runs = tmp_path / "runs"
    E, A, alpha = 2.0, 300.0, 0.4
    for i, n in enumerate([20_000, 60_000, 200_000, 600_000]):
        _write_run(runs, f"d{i}", _summary(f"d{i}", "dense", n, E + A * n ** -alpha))
    _write_run(runs, "lev", _summary("lev", "leviathan", 100_000, E + A * (1.7 * 100_000) ** -alpha,
                                     match="isoparam"))
    tab = ScalingTab(ExplorerState(runs), sweeps_root=no_studies)
    tab.__panel__()
    tab.activate()
    assert tab.source == RUNS and not tab.error.visible
    names = [t.name for t in tab.plot.object.data]
    assert "dense fit L(N)" in names and "Leviathan effective size" in names
    multiplier = tab.table.object.data[0].cells.values[4][0]
    assert multiplier.endswith("x") and 1.5 < float(multiplier[:-1]) < 1.9
    assert "Dense fit on 4 runs" in tab.law.object
    verdict = plain(tab.verdict.object)
    assert tab.verdict.visible and "1 Leviathan run(s) behave like a dense model larger than itself" in verdict
    assert f"({multiplier})" in verdict and "inside the paper's 1.47x-2.11x" in verdict

    few = tmp_path / "few"
    _write_run(few, "d0", _summary("d0", "dense", 1000, 5.0))
    _write_run(few, "lev", _summary("lev", "leviathan", 1000, 4.9))
    points = ScalingTab(ExplorerState(few), sweeps_root=no_studies)
    points.activate()
    points.source = RUNS
    assert points.notes.visible and "No fit" in plain(points.notes.object) and points.plot.visible
    assert not points.table.visible and not points.verdict.visible


def test_scaling_tab_loads_finished_stopped_and_failed_runs_and_names_the_skipped(tmp_path, monkeypatch):
    from leviathan_explore.dashboard import scaling as scaling_module

    monkeypatch.setattr(scaling_module, "N_BOOT", 50)
    runs = tmp_path / "runs"
    E, A, alpha = 2.0, 300.0, 0.4
    for i, n in enumerate([20_000, 60_000, 200_000]):  # three pairs laid out like the Train tab's
        _write_run(runs, f"web-{i}/dense", _summary("dense", "dense", n, E + A * n ** -alpha))
    stopped = _summary("leviathan", "leviathan", 50_000, None, match="isoparam")
    stopped.update(finished=False, stopped_early=True, steps=17, steps_planned=400)
    _write_run(runs, "web-0/leviathan", stopped)
    failed = _summary("leviathan", "leviathan", 50_000, None, match="isoparam")
    failed.update(finished=False, stopped_early=True, error="loss became nan at step 3; training stopped")
    _write_run(runs, "web-1/leviathan", failed)
    (runs / "web-2" / "leviathan").mkdir(parents=True)  # still running: config.json only
    (runs / "web-2" / "leviathan" / "config.json").write_text(json.dumps({"arch": "leviathan"}))
    tab = ScalingTab(ExplorerState(runs), sweeps_root=tmp_path / "no-sweeps")
    tab.activate()
    assert tab.source == RUNS and not tab.error.visible and tab.plot.visible
    notes = plain(tab.notes.object)
    assert "Left out of the fit (3)" in notes
    assert "web-0/leviathan (stopped" in notes and "web-1/leviathan (failed: loss became nan" in notes
    assert "web-2/leviathan (incomplete" in notes
    assert "Dense fit on 3 runs" in tab.law.object
    labels = list(tab.source_select.options)
    assert any("3 finished runs" in label for label in labels), labels


# ---- train ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    from leviathan_explore.data import build_corpus

    root = tmp_path_factory.mktemp("corpus")
    words = "the generator turns each token id into digits codebook rows and spline features".split()
    rng = np.random.default_rng(0)
    with open(root / "docs.jsonl", "w") as f:
        for _ in range(60):
            f.write(json.dumps({"text": " ".join(rng.choice(words, 120))}) + "\n")
    build_corpus("files", root / "data", tokenizer="gpt2", glob=str(root / "docs.jsonl"), compact=32,
                 val_fraction=0.2, progress=False)
    return str(root / "data")


def test_train_tab_refuses_bad_settings_in_the_page(tmp_path):
    tab = TrainTab(runs_dir=tmp_path)
    tab.__panel__()
    for field, value, expect in [("run_name", "../escape", ".."), ("run_name", "   ", "empty"),
                                 ("run_name", "/abs", "absolute"), ("steps", 0, "steps")]:
        tab = TrainTab(runs_dir=tmp_path)
        setattr(tab, field, value)
        assert tab.start() is None
        assert tab.error.visible and expect in plain(tab.error.object)
    (tmp_path / "taken").mkdir()
    tab = TrainTab(runs_dir=tmp_path, run_name="taken")
    assert tab.start() is None and "already exists" in plain(tab.error.object)
    assert not any(p.name != "taken" for p in tmp_path.iterdir())


BAD_NUMBERS = ["", "   ", "-1", "0", "abc", "1e400", "9" * 5000, "nan", "inf", "1.5.2"]


@pytest.mark.parametrize("field", ["steps", "batch_size", "seq_len", "grad_accum", "lr"])
def test_train_tab_numeric_fields_refuse_bad_entries_beside_the_field(tmp_path, field):
    tab = TrainTab(runs_dir=tmp_path)
    box = tab.fields[field]
    before = getattr(tab, field)
    for bad in BAD_NUMBERS + [str(10 ** 6)]:
        box.input.value = bad
        assert box.note.visible, (field, bad)
        assert "allowed" in plain(box.note.object) and getattr(tab, field) == before, (field, bad)
        assert tab.start() is None and "allowed" in plain(tab.error.object)
    assert not any(tmp_path.iterdir())  # nothing was started with a bad value


def test_train_tab_bounds_follow_the_preset_and_keep_a_micro_batch_small(tmp_path):
    from leviathan_explore.analysis.registry import training_flops
    from leviathan_explore.config import PRESETS, preset
    from leviathan_explore.dashboard.train import MICRO_BATCH_FLOPS
    from leviathan_explore.params import count_params, isoparametric_match

    tab = TrainTab(runs_dir=tmp_path)
    assert tab.fields["seq_len"].high == PRESETS["cpu-tiny"]["max_seq_len"] == 128
    tab.fields["seq_len"].input.value = "100000"
    assert tab.fields["seq_len"].note.visible and tab.seq_len == 64
    tab.seq_len = 128
    batch_high = tab.fields["batch_size"].high
    dense = preset("cpu-tiny", vocab_size=4097)
    worst = max(training_flops(count_params(c).to_dict(), 1) for c in (dense, isoparametric_match(dense).config))
    assert worst * 128 * batch_high <= MICRO_BATCH_FLOPS < worst * 128 * (batch_high + 1)
    tab.preset = "paper-421m"  # far larger: the sequence length itself is cut to stay within budget
    assert tab.fields["seq_len"].high < PRESETS["paper-421m"]["max_seq_len"] and not tab.fields["seq_len"].valid


def test_train_tab_shows_an_impossible_isoparametric_match_before_training(tmp_path, tiny_corpus):
    tab = TrainTab(runs_dir=tmp_path / "runs", run_name="nomatch", steps=3, batch_size=2, seq_len=16)
    tab.corpus = tiny_corpus  # 33 ids: the generator outweighs the table, no depth matches
    assert tab.match == "isoparam"
    assert tab.start() is None
    text = plain(tab.error.object)
    assert tab.error.visible and "Cannot start" in text and "no isoparametric Leviathan" in text
    assert not (tmp_path / "runs" / "nomatch").exists()


def test_train_tab_trains_a_pair_in_the_background(tmp_path, tiny_corpus):
    from leviathan_explore.analysis.interpretation import pair_verdict

    state = ExplorerState(tmp_path / "runs")
    tab = TrainTab(state=state, run_name="pair", steps=3, batch_size=2, seq_len=16, match="isobody")
    tab.corpus = tiny_corpus
    job = tab.start()
    assert job is not None and tab.start_button.disabled
    assert tab.start() is None and "still running" in tab.error.object
    job.thread.join(300)
    assert job.state == "finished", job.error
    tab.poll()
    assert tab.curves["dense"]["train_x"] == [1, 2, 3] and tab.curves["leviathan"]["train_x"] == [1, 2, 3]
    assert tab.curves["dense"]["val_loss"] and tab.bucket.visible
    names = [t.name for t in tab.loss.object.data]
    assert "dense train" in names and "Leviathan same body train" in names
    assert "pair" in tab.loss.object.layout.title.text
    assert tab.progress.value == 100 and not tab.start_button.disabled and tab.run_name != "pair"
    summaries = {}
    for arch in ("dense", "leviathan"):
        summaries[arch] = json.loads((tmp_path / "runs" / "pair" / arch / "summary.json").read_text())
        assert summaries[arch]["finished"] and summaries[arch]["steps"] == 3
    assert summaries["leviathan"]["match"] == "isobody"
    # the verdict is the library's, from these two summaries
    assert tab.verdict_box.visible and tab.verdict.startswith("Validation loss")
    assert tab.verdict.splitlines()[0] == pair_verdict(summaries["dense"], summaries["leviathan"]).splitlines()[0]
    assert f"{summaries['dense']['final_val_loss']:.3f}" in tab.verdict
    # the new runs are offered at once in the shared lists, newest first, with steps and loss
    assert state.source == RUN_PREFIX + "pair/leviathan"
    label = next(k for k, v in state.source_options.items() if v == RUN_PREFIX + "pair/leviathan")
    assert "3 steps" in label and f"{summaries['leviathan']['final_val_loss']:.3f}" in label


def test_train_tab_stop_and_failure(tmp_path, tiny_corpus):
    tab = TrainTab(runs_dir=tmp_path, run_name="stopped", steps=400, batch_size=2, seq_len=16, match="isobody")
    tab.corpus = tiny_corpus
    job = tab.start()
    while job.last_step.get("dense", 0) < 2 and job.thread.is_alive():
        time.sleep(0.05)
    tab.shutdown()  # what closing the browser session does
    job.thread.join(300)
    assert job.state == "stopped"
    summary = json.loads((tmp_path / "stopped" / "dense" / "summary.json").read_text())
    assert summary["stopped_early"] is True and summary["steps"] < 400
    assert "leviathan" not in job.summaries and not (tmp_path / "stopped" / "leviathan").exists()

    failing = TrainTab(runs_dir=tmp_path, run_name="failing", steps=2, batch_size=2, seq_len=16)
    failing.corpus = str(tmp_path / "no-such-data")
    assert failing.start() is None
    assert failing.error.visible and "Cannot start" in plain(failing.error.object)
    assert "no-such-data" in plain(failing.error.object)


@pytest.mark.timeout(600)
def test_stop_takes_effect_within_two_seconds_mid_step(tmp_path, tiny_data_dir, monkeypatch):
    """Stop is polled between micro-batches (the trainer's contract), so it is felt within one
    micro-batch, not one step. The page's own bounds keep a step short (8 micro-batches);
    here the accumulation bound is raised so that a step takes several seconds and a stop
    honoured only at the step's end would be late."""
    from leviathan_explore.dashboard import train as train_module

    monkeypatch.setattr(train_module, "MAX_GRAD_ACCUM", 32)
    tab = TrainTab(runs_dir=tmp_path, run_name="slow", steps=50, seq_len=128, grad_accum=32, match="isobody")
    tab.corpus = str(tiny_data_dir)
    tab.batch_size = tab.fields["batch_size"].high  # the largest micro-batch a page allows
    steps_at = []
    job = tab.start()
    assert job is not None, tab.error.object
    while len(steps_at) < 2 and job.thread.is_alive():
        if job.last_step.get("dense", 0) > len(steps_at):
            steps_at.append(time.monotonic())
        time.sleep(0.01)
    step_s = steps_at[1] - steps_at[0]
    assert step_s >= 3.0, f"a step took {step_s:.2f} s: too short to test stopping mid-step"
    time.sleep(step_s / 2)  # in the middle of step 3
    tab.stop()
    job.thread.join(60)
    waited = job.ended_at - job.stop_requested_at
    print(f"a step took {step_s:.1f} s; the job ended {waited:.2f} s after Stop")
    assert job.state == "stopped" and waited < 2.0, f"the job ended {waited:.2f} s after Stop (a step: {step_s:.1f} s)"
    summary = json.loads((tmp_path / "slow" / "dense" / "summary.json").read_text())
    assert summary["stopped_early"] and summary["steps"] == 2  # the partial step 3 was discarded


# ---- the app ----------------------------------------------------------------------------------

def test_app_builds_every_tab_lazily(tmp_path):
    app = ExplorerApp(tmp_path, sweeps_root=tmp_path / "sweeps")
    page = app.template()
    assert page is not None and len(app.tabs) == 5
    assert not app.anatomy.active and not app.geometry.active and not app.scaling.active
    assert [len(slot) for slot in app.slots] == [1, 0, 0, 0, 0]  # only the first tab is on the page
    app.tabs.active = 1
    assert app.anatomy.active and not app.geometry.active
    anatomy_view = app.slots[1].objects[0]
    app.tabs.active = 4
    assert app.scaling.active
    app.tabs.active = 0
    app.tabs.active = 1  # a tab shown before keeps its content: built once, never re-rendered
    assert [len(slot) for slot in app.slots] == [1, 1, 0, 0, 1]
    assert app.slots[1].objects[0] is anatomy_view
    assert app.anatomy.state is app.geometry.state is app.scaling.state is app.train.state is app.state
    app.shutdown()


def test_panel_serve_script_imports_without_the_package_context():
    # `panel serve leviathan_explore/dashboard/app.py` executes the file as a script
    import runpy

    path = Path(__file__).resolve().parents[1] / "leviathan_explore" / "dashboard" / "app.py"
    namespace = runpy.run_path(str(path), run_name="not_bokeh")
    assert callable(namespace["create_app"]) and os.path.isfile(path)


# ---- resources --------------------------------------------------------------------------------

def test_a_pane_updated_off_page_still_points_its_stylesheets_at_this_server():
    """Panel 1.9 gives a model without a document cdn.holoviz.org stylesheets (the Train tab's
    status, updated while another tab was shown, fetched loading.css from the internet)."""
    import panel as pn
    from bokeh.models import ImportedStyleSheet
    from bokeh.settings import settings

    from leviathan_explore.dashboard.app import keep_panel_css_local

    previous = settings.resources._user_value
    settings.resources = "server"
    try:
        keep_panel_css_local()
        keep_panel_css_local()  # idempotent: patching twice must not wrap twice
        props = pn.pane.Markdown("**status**")._get_properties(None)  # what a detached update computes
    finally:
        if isinstance(previous, str):
            settings.resources.set_value(previous)
        else:
            settings.resources.unset_value()
    urls = [str(s.url) for s in props["stylesheets"] if isinstance(s, ImportedStyleSheet)]
    assert any("markdown.css" in u for u in urls) and any("loading.css" in u for u in urls), urls
    assert not [u for u in urls if "://" in u], urls


def test_pyproject_pins_the_panel_release_the_stylesheet_patch_is_tested_against():
    import panel as pn

    from leviathan_explore.dashboard.app import PATCHED_FOR_PANEL

    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    pins = re.findall(r'"panel([^"]*)"', pyproject)
    assert pins == [f"=={PATCHED_FOR_PANEL}"], pins
    assert pn.__version__ == PATCHED_FOR_PANEL  # the installed Panel is the one the test above exercised


# ---- shared helpers ---------------------------------------------------------------------------

def test_md_escape_makes_typed_markup_literal_in_a_rendered_pane():
    import html

    from bokeh.document import Document

    from leviathan_explore.dashboard.common import md_escape, text_pane

    def rendered(markdown: str) -> str:  # the HTML the browser receives (the model escapes it for transport)
        return html.unescape(text_pane(markdown).get_root(Document()).text)

    typed = "<script>window.__x=1</script> <img src=x onerror=alert(1)> **bold** [a](javascript:x) `c`"
    out = rendered(f"typed: {md_escape(typed)}")
    assert "<p>" in out  # markup of our own still renders
    assert "<script" not in out and "<img" not in out and "<strong>" not in out and "<a " not in out
    assert html.unescape(out) == f"<p>typed: {typed}</p>\n"  # the reader sees exactly what was typed
    assert "<img" not in rendered("<img src=x onerror=alert(1)>")  # unescaped text too: no raw HTML


def test_latest_request_delivers_only_the_newest_result(monkeypatch):
    import threading

    import panel as pn

    from leviathan_explore.dashboard.common import LatestRequest

    class Doc:  # a session's document: callbacks queue for the next tick
        session_context = object()

        def __init__(self):
            self.ticks = []

        def add_next_tick_callback(self, callback):
            self.ticks.append(callback)

    doc = Doc()
    monkeypatch.setattr(pn.state, "curdoc", doc)
    release_first = threading.Event()
    delivered, errors = [], []
    worker = LatestRequest("test", on_error=errors.append)
    worker.submit(lambda: (release_first.wait(10), "old")[1], delivered.append)
    first = worker.thread
    worker.submit(lambda: "new", delivered.append)
    worker.thread.join(10)
    release_first.set()
    first.join(10)
    for tick in doc.ticks:
        tick()
    assert delivered == ["new"]  # the superseded request's result was dropped
    worker.submit(lambda: 1, lambda r: 1 / 0)  # a view that raises: shown, not logged
    worker.thread.join(10)
    doc.ticks[-1]()
    assert len(errors) == 1 and isinstance(errors[0], ZeroDivisionError)


def test_geometry_status_gives_an_honest_umap_estimate_while_it_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(geometry_module, "_UMAP_DONE_IN_PROCESS", False)
    tab = GeometryTab(ExplorerState(tmp_path), sample_size=50)
    tab.activate()
    tab.umap_started = time.monotonic() - 12.0
    text = plain(tab.status.object)
    lo, hi = geometry_module.UMAP_FIRST_S
    assert "12 s so far" in text and f"usually {lo}-{hi} s" in text
    assert "compiles its code" in text
    assert tab.umap_button.disabled  # one UMAP at a time
    monkeypatch.setattr(geometry_module, "_UMAP_DONE_IN_PROCESS", True)  # a later UMAP of this server
    tab.tick += 1
    text = plain(tab.status.object)
    lo, hi = geometry_module.UMAP_LATER_S
    assert f"usually {lo}-{hi} s" in text and "compiles" not in text


def test_scaling_lists_the_sweeps_of_a_study_and_loads_them(tmp_path, monkeypatch):
    from leviathan_explore.dashboard import scaling as scaling_module

    monkeypatch.setattr(scaling_module, "shipped_results_dir", lambda: tmp_path)
    sweep = tmp_path / "sweeps" / "a-study" / "main"
    for i, n in enumerate([20_000, 60_000, 200_000]):
        _write_run(sweep / "runs", f"d{i}-dense-lr0.01", _summary(f"d{i}-dense-lr0.01", "dense", n, 5.0 - i / 10))
    (sweep / "selected.json").write_text(json.dumps({"models": {
        f"d{i}-dense": {"run": f"d{i}-dense-lr0.01", "size": f"d{i}"} for i in range(3)}}))
    (tmp_path / "sweeps" / "a-study" / "study.json").write_text("{}")
    (tmp_path / "sweeps" / "not-a-study" / "inner").mkdir(parents=True)  # no study.json: not searched
    (tmp_path / "sweeps" / "not-a-study" / "inner" / "selected.json").write_text("{}")
    assert list(scaling_module.committed_sweeps()) == ["a-study/main"]
    df, skipped = scaling_module.load_table(scaling_module.SWEEP_PREFIX + "a-study/main", tmp_path)
    assert sorted(df["name"]) == ["d0-dense-lr0.01", "d1-dense-lr0.01", "d2-dense-lr0.01"] and skipped == []
    with pytest.raises(ValueError, match="no committed sweep"):
        scaling_module.load_table(scaling_module.SWEEP_PREFIX + "../a-study/main", tmp_path)


# ---- the Scaling tab's studies ----------------------------------------------------------------

STUDY_LAW = (2.0, 300.0, 0.4)  # E, A, alpha of the synthetic dense runs
EVIL_RUN = "d0-dense<img src=x onerror=alert(1)>"


def _write_sweep(sweep: Path, models: dict[str, tuple[str, str, int, float]]) -> None:
    """models: key -> (size, arch, total, loss); each a finished run and the sweep's choice for the key."""
    selected = {}
    for key, (size, arch, total, loss) in models.items():
        run = f"{key}-lr0.01"
        summary = _summary(EVIL_RUN if key == "d0-dense" else run, arch, total, loss,
                           match="isoparam" if arch == "leviathan" else None)
        _write_run(sweep / "runs", run, summary)
        selected[key] = {"run": run, "size": size, "lr": 0.01, "lr_searched": True, "lr_at_edge": False}
    (sweep / "selected.json").write_text(json.dumps({"models": selected}))


def _write_study(root: Path, name: str = "laptop-study", n_dense: int = 4, seed1: bool = True) -> Path:
    """A study laid out like ``leviathan-explore study run``'s: main (dense and isoparametric Leviathan
    at each width), seed1 (the smallest width again), and a "long" sweep that has not run."""
    E, A, alpha = STUDY_LAW
    study = root / name
    sizes = [f"d{i}" for i in range(4)]
    plan = {"name": name, "description": "A synthetic study <b>for tests</b>.", "sweeps": [
        {"name": "main", "sizes": [{"name": s} for s in sizes]},
        {"name": "seed1", "sizes": [{"name": "d0"}]},
        {"name": "long", "sizes": [{"name": "d0"}]}]}
    study.mkdir(parents=True)
    (study / "study.json").write_text(json.dumps(plan))
    totals = [20_000, 60_000, 200_000, 600_000]
    main = {}
    for i, (s, n) in enumerate(zip(sizes[:n_dense], totals)):
        main[f"{s}-dense"] = (s, "dense", n, E + A * n ** -alpha)
        main[f"{s}-lev-isoparam-depth"] = (s, "leviathan", n, E + A * (1.5 * n) ** -alpha)
    _write_sweep(study / "main", main)
    if seed1:
        write_seed1(study)
    return study


def write_seed1(study: Path) -> None:
    E, A, alpha = STUDY_LAW
    n = 20_000
    _write_sweep(study / "seed1", {"d0-dense": ("d0", "dense", n, E + A * n ** -alpha + 0.01),
                                   "d0-lev-isoparam-depth": ("d0", "leviathan", n, E + A * (1.5 * n) ** -alpha)})


@pytest.fixture
def quick_boot(monkeypatch):
    from leviathan_explore.dashboard import scaling as scaling_module

    monkeypatch.setattr(scaling_module, "N_BOOT", 30)  # the band's resamples; fewer keep the test quick
    return scaling_module


def test_scaling_opens_on_the_study_with_its_verdict_figures_and_tables(tmp_path, quick_boot):
    from leviathan_explore.analysis.study import study_report

    root = tmp_path / "sweeps"
    study = _write_study(root, seed1=False)
    _write_study(root, "neighbours")  # another study: listed in the same list, after the laptop study
    tab = ScalingTab(ExplorerState(tmp_path / "runs"), sweeps_root=root)
    tab.__panel__()
    tab.activate()
    keys = list(tab.options.values())
    assert tab.source == "study:laptop-study" == keys[0] and keys[1] == "study:neighbours"
    assert "sweep:laptop-study/main" in keys and "runs" in keys  # the other views stay offered
    assert not tab.error.visible and tab.study_body.visible and not tab.plot.visible
    assert not tab.status.visible and tab.computing == ""  # the background work is done
    assert "Study laptop-study" in plain(tab.study_head.object)
    assert "<b>" not in tab.study_head.object and "for tests" in plain(tab.study_head.object)

    expected = study_report(study, n_boot=quick_boot.N_BOOT)["verdict"]
    shown = tab.study_verdict.object
    assert tab.study_verdict.visible and "written by the library from the numbers below" in shown
    assert len(expected) >= 2 and all(f"- {md_escape(v)}\n" in shown + "\n" for v in expected)  # escaped, in order
    assert shown.index(md_escape(expected[0])) < shown.index(md_escape(expected[-1]))
    assert tab.study_figures["gaps"].visible and tab.study_figures["gaps"].object is not None
    assert not tab.study_figures["tokens"].visible and not tab.study_figures["regime"].visible
    missing = plain(tab.study_missing.object)
    assert "Not run yet (2 of 3 sweeps): seed1, long" in missing
    assert "Not drawn yet (no data): the gap during training; the regime map" in missing
    tables = tab.study_tables.object
    assert "Isoparametric: dense vs Leviathan" in tables and "What the numbers say" not in tables
    assert md_escape(EVIL_RUN) in tables and EVIL_RUN not in tables  # a run's name is shown as text
    assert "main | d0, d1, d2, d3 (4 of 4) | 8" in plain(tab.study_progress.object)

    # the study grows: a sweep chooses its runs, and the next visit reads it again
    write_seed1(study)
    tab.activate()
    grown = study_report(study, n_boot=quick_boot.N_BOOT)["verdict"]
    assert grown != expected and all(md_escape(v) in tab.study_verdict.object for v in grown)
    assert "seed-to-seed difference of one model is 0.010" in plain(tab.study_verdict.object)
    assert "Not run yet (1 of 3 sweeps): long" in plain(tab.study_missing.object)

    # the committed sweeps of a study still open in the sweep view
    tab.source = "sweep:laptop-study/main"
    assert tab.study is None and not tab.study_body.visible and tab.plot.visible
    assert "Dense fit on 4 runs" in tab.law.object


def test_a_study_without_a_fit_says_what_is_missing_and_shows_what_ran(tmp_path, quick_boot, monkeypatch):
    from leviathan_explore.analysis import study as study_module
    from leviathan_explore.analysis.scaling import ScalingFitError

    root = tmp_path / "sweeps"
    _write_study(root, n_dense=1, seed1=False)  # one width of five has run: no dense law yet
    tab = ScalingTab(ExplorerState(tmp_path / "runs"), sweeps_root=root)
    tab.__panel__()
    tab.activate()
    assert tab.source == "study:laptop-study" and not tab.error.visible
    missing = plain(tab.study_missing.object)
    assert tab.study_missing.visible and "Incomplete: main (no chosen run yet at d1, d2, d3)" in missing
    assert "Not run yet (2 of 3 sweeps): seed1, long" in missing
    # what exists is drawn: the one width's gap (or, with no pair yet, main's runs as points)
    assert tab.study_figures["gaps"].visible or tab.study_points.visible

    # a report that cannot be written at all (the library raises): the reason, and what exists
    def unfittable(*args, **kwargs):
        raise ScalingFitError("1 dense run(s): the law needs at least 3 dense runs of distinct sizes")

    monkeypatch.setattr(study_module, "study_report", unfittable)
    other = _write_study(root, "neighbours", n_dense=1, seed1=False)
    tab.activate()  # listed on the next visit
    tab.source = "study:neighbours"
    missing = plain(tab.study_missing.object)
    assert tab.study.get("dir") == str(other) and not tab.error.visible
    assert "The study report cannot be written yet: 1 dense run(s): the law needs at least 3 dense runs" in missing
    assert "finished runs of main as points" in missing and tab.study_points.visible
    assert not tab.study_verdict.visible and tab.study_tables.object == ""
    assert all(not f.visible for f in tab.study_figures.values())
    assert "What has run" in tab.study_progress.object


def test_a_broken_or_empty_study_gives_a_message_not_a_traceback(tmp_path, quick_boot):
    root = tmp_path / "sweeps"
    (root / "broken").mkdir(parents=True)
    (root / "broken" / "study.json").write_text("{not json")
    for name in ("empty", "gone"):
        (root / name).mkdir()
        (root / name / "study.json").write_text(json.dumps({"name": name, "sweeps": [{"name": "main"}]}))
    tab = ScalingTab(ExplorerState(tmp_path / "runs"), sweeps_root=root)
    tab.__panel__()
    tab.activate()
    labels = {v: k for k, v in tab.options.items()}
    assert labels["study:broken"] == "study broken (study.json unreadable)"
    assert labels["study:empty"] == "study empty (0 of 1 sweeps with results)"
    tab.source = "study:broken"
    assert tab.error.visible and "Cannot load the study:" in plain(tab.error.object)
    assert "not valid JSON" in plain(tab.error.object) and tab.study is None
    tab.source = "study:empty"
    assert not tab.error.visible and tab.study_body.visible
    assert "Not run yet (1 of 1 sweeps): main" in plain(tab.study_missing.object)
    shutil.rmtree(root / "gone")  # deleted since the list was made
    tab.source = "study:gone"
    assert "no study named 'gone'" in plain(tab.error.object)


def test_the_app_takes_the_study_root_from_the_environment(tmp_path, monkeypatch, quick_boot):
    from leviathan_explore.dashboard.app import SWEEPS_ENV

    _write_study(tmp_path / "elsewhere", "my-study", seed1=False)
    monkeypatch.setenv(SWEEPS_ENV, str(tmp_path / "elsewhere"))
    app = ExplorerApp(tmp_path / "runs")
    app.tabs.active = 4
    assert app.scaling.source == "study:my-study"  # the first study, when there is no laptop study
    assert "Study my-study" in plain(app.scaling.study_head.object)
    app.shutdown()


# ---- the Allocation tab's representations ------------------------------------------------------

@pytest.mark.parametrize("representation", ["leviathan", "factorized", "codebooks", "hashed"])
def test_allocation_representation_selector_changes_the_split_to_params_comparison(representation):
    from leviathan_explore.config import LeviathanConfig, ModelConfig
    from leviathan_explore.params import comparison

    tab = AllocationTab(d_model=256)
    tab.__panel__()
    before = tab.report
    tab.representation = representation
    dense = ModelConfig(vocab_size=200_019, d_model=256, n_layers=6, n_heads=8, leviathan=LeviathanConfig())
    expected = comparison(dense, by="depth", repr=representation)
    assert tab.report == expected and (representation == "leviathan") == (tab.report == before)
    html = tab.numbers.object
    stages = expected["representation"]["stages"]
    assert f"data-representation='{representation}'" in html
    for stage, n in stages.items():
        assert f"data-stage='{stage}'>{n:,}<" in html
    assert f"data-stage='total'>{sum(stages.values()):,}<" in html
    for key in ("leviathan_isobody", "leviathan_isoparam"):
        assert f"data-model='{key}'>{expected[key]['total']:,}" in html
    text = plain(tab.summary.object)
    about = {"leviathan": "What Leviathan is", "factorized": "ALBERT's factorisation: a V x E = 200,019 x 16 table",
             "codebooks": "the generator's stage 1 alone", "hashed": "the rows chosen by 2 hash function(s)"}
    assert about[representation] in text
    assert "The head remains" in text and "Identical backbone" in text  # the explanations stay
    shown = {name: box.visible for name, box in tab.setting_boxes.items()}
    assert shown == {"generator": representation in ("leviathan", "codebooks"),
                     "factorized": representation == "factorized", "hashed": representation == "hashed"}
    if representation != "leviathan":
        assert [x for x in tab.bars.object.data[0].x if "same body" in x][0].startswith(
            {"factorized": "factorised table", "codebooks": "codebooks only", "hashed": "hashed embedding"}[
                representation])


def test_allocation_representation_settings_are_bounded_and_counted():
    from leviathan_explore.representations.hashed import collision_rate

    tab = AllocationTab(d_model=256, representation="factorized")
    tab.__panel__()
    assert tab.collisions is None  # counted only for the hashed embedding
    tab.factor_field.input.value = "32"
    assert tab.report["representation"]["stages"]["table"] == 200_019 * 32
    fields = ((tab.factor_field, "factor width E", "1 to 65,536", ("0", "65537", "", "abc", "1.5", "9" * 5000)),
              (tab.buckets_field, "buckets B (table rows)", "1 to 100,000,000", ("0", "100000001", "-3", "x")),
              (tab.functions_field, "hash functions h", "1 to 16", ("0", "17", "2.5", "<b>4</b>")))
    for field, label, allowed, bad_values in fields:
        tab.representation = "hashed" if field is not tab.factor_field else "factorized"
        good = tab.report
        for bad in bad_values:
            field.input.value = bad
            note = plain(field.note.object)
            assert field.note.visible and label in note and allowed in note, (label, bad, note)
            assert tab.report == good  # never used
        assert "<b>" not in field.note.object
    tab.buckets_field.input.value = "4096"
    tab.functions_field.input.value = "3"
    assert not tab.buckets_field.note.visible and tab.report["representation"]["stages"]["table"] == 4096 * 256
    rate = collision_rate(200_019, 4096, 3, 0)
    assert tab.collisions == {"key": (200_019, 4096, 3, 0), "rate": rate}
    assert f"{100 * rate:.2f}% of the 200,019 ids share all 3 of their buckets" in plain(tab.collision_note.object)
    tab.tokenizer = "custom"
    tab.vocab_field.input.value = "2000000"  # 2M ids x 3 hashes: more than the page counts
    text = plain(tab.collision_note.object)
    assert "not counted in the page" in text and "collision_rate(2000000, 4096, 3, 0)" in text
    tab.vocab_field.input.value = "1000"
    rate = collision_rate(1000, 4096, 3, 0)
    assert f"{100 * rate:.2f}% of the 1,000 ids" in plain(tab.collision_note.object)


def test_the_scaling_tab_shows_a_neighbours_study_with_its_own_report(quick_studies):
    from leviathan_explore.analysis.neighbours import neighbours_report
    from leviathan_explore.dashboard import scaling as scaling_module

    view = scaling_module.compute_study("neighbours-quick", quick_studies)
    assert view["kind"] == "neighbours" and not view["problem"]
    assert view["report"]["verdict"] == neighbours_report(quick_studies / "neighbours-quick", n_boot=view["n_boot"])["verdict"]
    assert view["has_data"]["gaps"] and "codebooks-isoparam-depth" in view["tables"].replace("\\", "")  # names escaped
    tab = ScalingTab(ExplorerState(quick_studies / "runs"), sweeps_root=quick_studies)
    tab.__panel__()
    tab.activate()
    assert "study:neighbours-quick" in tab.options.values()
    tab.source = "study:neighbours-quick"
    assert not tab.error.visible and tab.study_body.visible and tab.study["kind"] == "neighbours"
    assert all(md_escape(v) in tab.study_verdict.object for v in view["report"]["verdict"])
    figure = tab.study_figures["gaps"].object  # the neighbours' figure, not the laptop study's
    assert tab.study_figures["gaps"].visible and figure is not None
    assert figure.layout.title.text.startswith("Each representation")
    assert any("codebooks-isoparam-depth" in str(y) for y in figure.data[0].y)
    assert "codebooks-isoparam-depth" in tab.study_tables.object.replace("\\", "")
    assert "regime map" not in tab.study_missing.object  # the laptop study's figures are not asked of it
    assert "neighbours_report" in tab.study_head.object
