"""Dashboard tabs without a browser: they construct, react to their inputs, and turn bad
input into in-page messages; run paths stay inside the runs directory."""

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from leviathan_explore.dashboard import geometry as geometry_module
from leviathan_explore.dashboard.allocation import AllocationTab
from leviathan_explore.dashboard.anatomy import AnatomyTab
from leviathan_explore.dashboard.app import ExplorerApp
from leviathan_explore.dashboard.common import dense_partner, list_runs, safe_run_dir
from leviathan_explore.dashboard.geometry import GeometryTab
from leviathan_explore.dashboard.scaling import RUNS, ScalingTab
from leviathan_explore.dashboard.sources import RUN_PREFIX, UNTRAINED, load_source, source_options
from leviathan_explore.dashboard.train import TrainTab


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
            "steps": 10, "tokens_seen": 1000, "final_val_loss": loss, "final_val_ppl": float(np.exp(loss)),
            "bucket_losses": {"frequent": loss - 1, "medium": loss, "rare": loss + 1}, "mean_tokens_per_s": 100.0,
            "wall_time_s": 1.0, "lr": 1e-3, "hardware": {"device": "cpu"},
            "data": {"dir": "nowhere", "tokenizer": "gpt2", "vocab_size": 100, "content_hash": content_hash},
            "stopped_early": False, "finished": True}


def _write_run(root: Path, rel: str, summary: dict) -> Path:
    d = root / rel
    d.mkdir(parents=True)
    (d / "summary.json").write_text(json.dumps(summary))
    (d / "metrics.jsonl").write_text("")
    return d


def test_list_runs_reports_corrupt_summaries_and_finds_pairs(tmp_path):
    _write_run(tmp_path, "job/dense", _summary("dense", "dense", 1000, 5.0))
    _write_run(tmp_path, "job/leviathan", _summary("leviathan", "leviathan", 1000, 4.9))
    bad = tmp_path / "broken"
    bad.mkdir()
    (bad / "summary.json").write_text("{not json")
    runs, problems = list_runs(tmp_path)
    assert [r.name for r in runs] == ["job/dense", "job/leviathan"]
    assert len(problems) == 1 and "broken" in problems[0] and "corrupt" in problems[0]
    assert dense_partner(runs[1], runs).name == "job/dense"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list_runs(tmp_path / "missing")


def test_load_source_refuses_escaping_run_names(tmp_path):
    with pytest.raises(ValueError):
        load_source(RUN_PREFIX + "../outside", tmp_path)
    with pytest.raises(ValueError):
        load_source("bogus", tmp_path)
    options, problems = source_options(tmp_path / "missing")
    assert UNTRAINED in options.values() and "does not exist" in problems[0]


# ---- allocation --------------------------------------------------------------------------------

def test_allocation_tab_reacts_and_reports_bad_vocabulary():
    tab = AllocationTab()
    tab.__panel__()
    assert "102,409,728" in tab.numbers.object  # o200k x 512
    before = tab.numbers.object
    tab.d_model = 256
    assert tab.numbers.object != before and "51,204,864" in tab.numbers.object
    assert tab.bars.object is not None and tab.share.object is not None
    tab.tokenizer = "custom"
    for bad in (0, 10**9):
        tab.custom_vocab = bad
        assert tab.error.visible and "vocab_size" in tab.error.object and str(bad) in tab.error.object
        assert tab.report is None and tab.numbers.object == "" and not tab.bars.visible
    tab.custom_vocab = 32_000
    assert not tab.error.visible and tab.report["dense"]["vocab_size"] == 32_000 and tab.bars.visible
    tab.n_heads = 7  # 256 % 7 != 0
    assert tab.error.visible and "n_heads" in tab.error.object
    tab.n_heads = 8
    tab.match_by = "ffn"
    assert "SwiGLU hidden size" in tab.summary.object


# ---- anatomy ----------------------------------------------------------------------------------

def test_anatomy_tab_traces_tokens_and_rejects_empty_text(tmp_path):
    tab = AnatomyTab(runs_dir=tmp_path / "no-runs")
    tab.__panel__()
    assert tab.figs["codebook"].object is None  # nothing computed before the tab is opened
    tab.activate()
    assert "does not exist" in tab.notice.object
    assert tab.source == UNTRAINED and tab.pieces and tab.figs["embedding"].visible
    for empty in ("", "   \n "):
        tab.text = empty
        assert tab.error.visible and "empty or only whitespace" in tab.error.object
        assert not tab.figs["codebook"].visible and tab.pieces == []
    tab.text = "hello world"
    assert not tab.error.visible and [p.text for p in tab.pieces] == ["hello", " world"]
    first = tab.trace.token_id
    tab.token_select.value = 1
    assert tab.trace.text == " world" and tab.trace.token_id != first
    before = tab.figs["bspline"].object
    tab.coordinate = 5
    assert tab.figs["bspline"].object is not before


# ---- geometry ---------------------------------------------------------------------------------

def test_geometry_tab_maps_neighbours_and_messages(tmp_path, monkeypatch):
    tab = GeometryTab(runs_dir=tmp_path / "no-runs", sample_size=60)
    tab.__panel__()
    tab.activate()
    assert "does not exist" in tab.notice.object
    tab.source = UNTRAINED
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
    tab.query = "   "
    assert tab.query_error.visible and not tab.neighbours.visible
    tab.query = " the"
    assert not tab.query_error.visible and tab.neighbours.visible
    assert tab.spread.object is not None

    # UMAP runs in a worker thread; a stand-in keeps the test fast (umap_2d has its own test)
    monkeypatch.setattr(geometry_module, "umap_2d", lambda x, **kw: np.asarray(x)[:, :2] * 1.0)
    tab.start_umap()
    assert tab.method == "UMAP" and "UMAP of dense table" in tab.map.object.layout.title.text
    monkeypatch.setattr(geometry_module, "umap_2d", lambda x, **kw: (_ for _ in ()).throw(ValueError("boom")))
    tab.space = "generated"
    tab.start_umap()
    assert tab.error.visible and "UMAP failed: boom" in tab.error.object.replace("**", "")


def test_geometry_tab_reports_a_corrupt_run_summary(tmp_path):
    bad = tmp_path / "bad-run"
    bad.mkdir()
    (bad / "summary.json").write_text("[1, 2")
    tab = GeometryTab(runs_dir=tmp_path, sample_size=50)
    tab.activate()
    assert tab.notice.visible and "bad-run" in tab.notice.object and "corrupt" in tab.notice.object
    assert tab.sample is not None  # the page still shows something


# ---- scaling ----------------------------------------------------------------------------------

def test_scaling_tab_missing_corrupt_and_fitted(tmp_path, monkeypatch):
    from leviathan_explore.dashboard import scaling as scaling_module

    monkeypatch.setattr(scaling_module, "N_BOOT", 50)  # the band's resamples; fewer keep the test quick
    missing = ScalingTab(runs_dir=tmp_path / "missing")
    missing.activate()
    missing.source = RUNS
    assert missing.error.visible and "does not exist" in missing.error.object

    corrupt_dir = tmp_path / "corrupt"
    (corrupt_dir / "r1").mkdir(parents=True)
    (corrupt_dir / "r1" / "summary.json").write_text("{")
    corrupt = ScalingTab(runs_dir=corrupt_dir)
    corrupt.activate()
    corrupt.source = RUNS
    assert corrupt.error.visible and "summary.json" in corrupt.error.object

    runs = tmp_path / "runs"
    E, A, alpha = 2.0, 300.0, 0.4
    for i, n in enumerate([20_000, 60_000, 200_000, 600_000]):
        _write_run(runs, f"d{i}", _summary(f"d{i}", "dense", n, E + A * n ** -alpha))
    _write_run(runs, "lev", _summary("lev", "leviathan", 100_000, E + A * (1.7 * 100_000) ** -alpha,
                                     match="isoparam"))
    tab = ScalingTab(runs_dir=runs)
    tab.__panel__()
    tab.activate()
    assert tab.source == RUNS and not tab.error.visible
    names = [t.name for t in tab.plot.object.data]
    assert "dense fit L(N)" in names and "Leviathan effective size" in names
    multiplier = tab.table.object.data[0].cells.values[4][0]
    assert multiplier.endswith("x") and 1.5 < float(multiplier[:-1]) < 1.9
    assert "Dense fit on 4 runs" in tab.law.object

    few = tmp_path / "few"
    _write_run(few, "d0", _summary("d0", "dense", 1000, 5.0))
    _write_run(few, "lev", _summary("lev", "leviathan", 1000, 4.9))
    points = ScalingTab(runs_dir=few)
    points.activate()
    points.source = RUNS
    assert points.notes.visible and "No fit" in points.notes.object and points.plot.visible
    assert not points.table.visible


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
        assert tab.error.visible and expect in tab.error.object
    (tmp_path / "taken").mkdir()
    tab = TrainTab(runs_dir=tmp_path, run_name="taken")
    assert tab.start() is None and "already exists" in tab.error.object
    assert not any(p.name != "taken" for p in tmp_path.iterdir())


def test_train_tab_trains_a_pair_in_the_background(tmp_path, tiny_corpus):
    tab = TrainTab(runs_dir=tmp_path / "runs", run_name="pair", steps=3, batch_size=2, seq_len=16)
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
    assert "pair/dense train" in names and "pair/leviathan train" in names
    assert tab.progress.value == 100 and not tab.start_button.disabled and tab.run_name != "pair"
    for arch in ("dense", "leviathan"):
        summary = json.loads((tmp_path / "runs" / "pair" / arch / "summary.json").read_text())
        assert summary["finished"] and summary["steps"] == 3
    assert json.loads((tmp_path / "runs" / "pair" / "leviathan" / "summary.json").read_text())["match"] == "isoparam"


def test_train_tab_stop_and_failure(tmp_path, tiny_corpus):
    tab = TrainTab(runs_dir=tmp_path, run_name="stopped", steps=400, batch_size=2, seq_len=16)
    tab.corpus = tiny_corpus
    job = tab.start()
    while job.last_step.get("dense", 0) < 2 and job.thread.is_alive():
        time.sleep(0.05)
    tab.shutdown()  # what closing the browser session does
    job.thread.join(300)
    assert job.state == "stopped" and "leviathan" not in job.summaries
    summary = json.loads((tmp_path / "stopped" / "dense" / "summary.json").read_text())
    assert summary["stopped_early"] is True and summary["steps"] < 400

    failing = TrainTab(runs_dir=tmp_path, run_name="failing", steps=2, batch_size=2, seq_len=16)
    failing.corpus = str(tmp_path / "no-such-data")
    failing.start().thread.join(60)
    failing.poll()
    assert failing.error.visible and "Training failed" in failing.error.object
    assert "no-such-data" in failing.error.object


# ---- the app ----------------------------------------------------------------------------------

def test_app_builds_every_tab_lazily(tmp_path):
    app = ExplorerApp(tmp_path)
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
