"""Safety of the served dashboard.

- it listens on the loopback interface unless told otherwise;
- a run name or source typed into the page names a directory inside the runs
  directory: ``..``, absolute paths and symbolic links are refused, and no reader
  follows a symbolic link out of it;
- nothing it loads is unpickled: no unpickling call in the package, and planted
  pickles (``.pt``, ``.pkl``, a pickle posing as ``.safetensors``) never run;
- a training job that fails shows its error in its own session's page; other
  sessions and the server carry on.

(What a user types is never run as HTML: tests/test_input_safety.py.)
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import json
import pickle
import re
import shutil
import socket
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leviathan_explore.analysis.registry import scan_runs
from leviathan_explore.cli import build_parser
from leviathan_explore.dashboard.common import safe_run_dir
from leviathan_explore.dashboard.sources import RUN_PREFIX, load_source, source_options

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "leviathan_explore"


def load_benchmark():
    """benchmarks/load_dashboard.py as a module (its Server and page helpers are reused here)."""
    spec = importlib.util.spec_from_file_location("load_dashboard", REPO / "benchmarks" / "load_dashboard.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- binding --------------------------------------------------------------------------------

def test_serve_binds_loopback_unless_told_otherwise():
    from leviathan_explore.dashboard.app import serve

    serve_parser = build_parser()._subparsers._group_actions[0].choices["serve"]
    address = next(a for a in serve_parser._actions if a.dest == "address")
    assert address.default == "127.0.0.1"
    assert inspect.signature(serve).parameters["address"].default == "127.0.0.1"


def _non_loopback_ip() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))  # no packet is sent; picks the outgoing interface
            ip = s.getsockname()[0]
        except OSError:
            return None
    return None if ip.startswith("127.") else ip


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_data_dir):
    """A real `leviathan-explore serve` whose working directory holds a good and a broken corpus
    (its manifest is fine, so the page accepts it; its token file is gone, so the job fails)."""
    bench = load_benchmark()
    home = tmp_path_factory.mktemp("served")
    shards = home / "data" / "shards"
    shutil.copytree(tiny_data_dir, shards / "good")
    _break_corpus(tiny_data_dir, shards / "broken")
    runs = home / "runs"
    runs.mkdir()
    server = bench.Server(runs, cwd=home)
    try:
        server.wait_ready()
        yield server
    finally:
        code = server.stop()
    assert code == 0, server.log()
    assert bench.unexpected_tracebacks("".join(server.lines)) == [], server.log()


def _break_corpus(good: Path, broken: Path) -> Path:
    """A copy of ``good`` without its training tokens: it passes the page's checks (its
    manifest reads) and fails in the worker, where the shards are opened."""
    shutil.copytree(good, broken)
    (broken / "train.bin").unlink()
    return broken


def test_the_served_app_listens_on_loopback_only(served):
    listening = [c.laddr for c in served.ps.net_connections(kind="inet") if c.status == "LISTEN"]
    assert listening and all(addr.ip in ("127.0.0.1", "::1") for addr in listening), listening
    ip = _non_loopback_ip()
    if ip is not None:  # the same port on the machine's network address refuses the connection
        with socket.socket() as s, pytest.raises(OSError):
            s.settimeout(5)
            s.connect((ip, served.port))


# ---- run names and paths ---------------------------------------------------------------------

ESCAPES = ["..", "../x", "a/../../x", "a/..", "./a", "/etc", "/etc/passwd", "//x", "\\x", "C:\\x", "c:x", "~",
           "~root", "a//b", "a/", " ../x ", "a\\..\\..\\x", "a\x00b", "a\nb", "%2e%2e", "…", "a" * 101, ""]


@pytest.mark.parametrize("name", ESCAPES, ids=[repr(n)[:20] for n in ESCAPES])
def test_run_names_that_could_escape_are_refused(tmp_path, name):
    runs = tmp_path / "runs"
    runs.mkdir()
    with pytest.raises(ValueError) as info:
        safe_run_dir(runs, name)
    assert "\n" not in str(info.value) and "run name" in str(info.value)


def _make_symlinks(tmp_path: Path) -> Path:
    runs, outside = tmp_path / "runs", tmp_path / "outside"
    (outside / "secret").mkdir(parents=True)
    (runs / "real").mkdir(parents=True)
    (runs / "out").symlink_to(outside, target_is_directory=True)
    (runs / "in").symlink_to(runs / "real", target_is_directory=True)
    (runs / "real" / "deep").symlink_to(outside / "secret", target_is_directory=True)
    (runs / "dangling").symlink_to(tmp_path / "nowhere")
    return runs


@pytest.mark.parametrize("name", ["out", "out/secret", "in", "in/x", "real/deep", "real/deep/x", "dangling",
                                  "dangling/x"])
def test_run_names_through_symbolic_links_are_refused(tmp_path, name):
    runs = _make_symlinks(tmp_path)
    with pytest.raises(ValueError, match="symbolic link"):
        safe_run_dir(runs, name)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.text(max_size=30),
                 st.lists(st.sampled_from(["a", "..", ".", "", "out", "in", "real", "deep", "b.c", "-x", "/", "\\"]),
                          max_size=5).map("/".join)))
def test_any_run_name_resolves_inside_the_runs_directory_or_is_refused(tmp_path, name):
    runs = tmp_path / "runs"
    if not runs.exists():
        _make_symlinks(tmp_path)
    try:
        path = safe_run_dir(runs, name)
    except ValueError as exc:
        assert "\n" not in str(exc)
        return
    root = runs.resolve()
    assert path.resolve().is_relative_to(root) and path.resolve() != root
    probe = path
    while probe != root:  # no existing part of the path is a symbolic link
        assert not probe.is_symlink(), (name, probe)
        probe = probe.parent


@pytest.mark.parametrize("name", ["../escape", "/tmp/escape", "out/x", "a/../../escape"])
def test_the_train_tab_refuses_an_escaping_run_name_and_writes_nothing(tmp_path, name):
    from leviathan_explore.dashboard.train import TrainTab

    runs = _make_symlinks(tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    tab = TrainTab(runs, run_name=name, steps=2)
    assert tab.start() is None and tab.job is None
    assert tab.error.visible and "Cannot start" in tab.error.object
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert not Path("/tmp/escape").exists()


@pytest.mark.parametrize("key", [RUN_PREFIX + n for n in ("../x", "/etc", "out/secret", "real/deep", "")]
                         + ["../../etc/passwd", "run:", "demo/../../x", "untrained/.."])
def test_embedding_sources_cannot_name_a_path_outside_the_runs_directory(tmp_path, key):
    runs = _make_symlinks(tmp_path)
    (tmp_path / "outside" / "secret" / "summary.json").write_text(json.dumps({"arch": "leviathan"}))
    with pytest.raises((ValueError, FileNotFoundError)):
        load_source(key, runs)


def test_no_reader_follows_a_symbolic_link_out_of_the_runs_directory(tmp_path):
    from leviathan_explore.dashboard.scaling import RUNS, load_table

    runs = _make_symlinks(tmp_path)
    secret = {"arch": "leviathan", "name": "secret", "params": {"total": 1}, "final_val_loss": 1.0}
    (tmp_path / "outside" / "secret" / "summary.json").write_text(json.dumps(secret))
    (tmp_path / "outside" / "summary.json").write_text(json.dumps(secret))
    found, problems = scan_runs(runs, max_depth=4)
    assert found == [] and problems == []
    options, _ = source_options(runs)
    assert not any("secret" in label or "out" in key[len(RUN_PREFIX):] for label, key in options.items()
                   if key.startswith(RUN_PREFIX))
    with pytest.raises(ValueError, match="no finished runs"):
        load_table(RUNS, runs)


# ---- nothing is unpickled ----------------------------------------------------------------------

UNPICKLING = re.compile(r"\b(pickle|cPickle|dill|cloudpickle|joblib|shelve|marshal)\b|read_pickle|allow_pickle\s*=\s*True")


def _calls_torch_load_without_weights_only(tree: ast.AST) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load":
            owner = node.func.value
            if isinstance(owner, ast.Name) and owner.id == "torch":
                safe = any(k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                           for k in node.keywords)
                if not safe:
                    lines.append(node.lineno)
    return lines


def test_the_package_has_no_unpickling_call():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text()
        tree = ast.parse(source)
        code_lines = {n.lineno for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom, ast.Call,
                                                                           ast.Attribute, ast.Name, ast.keyword))}
        for lineno, line in enumerate(source.splitlines(), start=1):
            if UNPICKLING.search(line) and lineno in code_lines:
                offenders.append(f"{path.relative_to(REPO)}:{lineno}: {line.strip()}")
        offenders += [f"{path.relative_to(REPO)}:{n}: torch.load without weights_only=True"
                      for n in _calls_torch_load_without_weights_only(tree)]
    assert offenders == [], "\n".join(offenders)


class _Payload:
    """Unpickling this touches ``path``: the proof that something was unpickled."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


@pytest.fixture(scope="module")
def trained_pair(tmp_path_factory, tiny_data_dir) -> Path:
    """A runs directory with one tiny dense + Leviathan pair (3 steps each)."""
    from leviathan_explore.training import TrainConfig, train

    runs = tmp_path_factory.mktemp("runs")
    for arch in ("dense", "leviathan"):
        train(TrainConfig(arch=arch, preset="cpu-tiny", model=dict(d_model=32, n_layers=1, n_heads=2), steps=3,
                          batch_size=2, seq_len=16, eval_every=3, eval_batches=1, checkpoint_every=3, device="cpu",
                          data_dir=str(tiny_data_dir), out_dir=str(runs / "pair" / arch), progress=False))
    return runs


def test_planted_pickles_in_a_run_are_never_unpickled(tmp_path, trained_pair, monkeypatch):
    from leviathan_explore.analysis.registry import load_for_fit
    from leviathan_explore.dashboard.scaling import RUNS, load_table
    from leviathan_explore.training import CheckpointError, find_latest_checkpoint, load_run_model

    runs = tmp_path / "runs"
    shutil.copytree(trained_pair, runs)
    marker = tmp_path / "UNPICKLED"
    blob = pickle.dumps(_Payload(marker))
    for arch in ("dense", "leviathan"):
        run = runs / "pair" / arch
        for name in ("model.pt", "pytorch_model.bin", "embeddings.pkl", "optimizer.pt", "summary.pkl"):
            (run / name).write_bytes(blob)
        torch.save(_Payload(marker), run / "checkpoint.pt")
        ckpt = sorted((run / "checkpoints").iterdir())[-1]
        (ckpt / "model.pt").write_bytes(blob)
    # the dense run's weights are replaced by a pickle posing as safetensors
    dense_ckpt = sorted((runs / "pair" / "dense" / "checkpoints").iterdir())[-1]
    (dense_ckpt / "model.safetensors").write_bytes(blob)

    calls = []

    def refuse(*args, **kwargs):
        calls.append(args[:1])
        raise AssertionError("something tried to unpickle")

    for target, name in ((pickle, "load"), (pickle, "loads"), (torch, "load")):
        monkeypatch.setattr(target, name, refuse)

    # every reader of runs: listing, registry, scaling table, checkpoints, weights, embedding sources
    found, problems = scan_runs(runs)
    assert {r.name for r in found} == {"pair/dense", "pair/leviathan"} and problems == []
    assert len(load_for_fit(runs / "pair" / "dense", runs / "pair" / "leviathan")) == 2
    assert len(load_table(RUNS, runs)[0]) == 2
    with pytest.raises(CheckpointError, match="model.safetensors"):
        find_latest_checkpoint(runs / "pair" / "dense" / "checkpoints")
    with pytest.raises(CheckpointError):
        load_run_model(runs / "pair" / "dense")
    assert load_run_model(runs / "pair" / "leviathan").cfg.token_repr == "leviathan"
    options, _ = source_options(runs)
    key = next(k for k in options.values() if k.startswith(RUN_PREFIX))
    with pytest.raises((ValueError, CheckpointError)):  # its dense partner is the poisoned run
        load_source(key, runs)
    assert calls == [] and not marker.exists()


# ---- a worker's failure stays in its session -----------------------------------------------------

def _drain_until_done(tab, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not tab.job.done and time.monotonic() < deadline:
        time.sleep(0.1)
    tab.poll()


def test_a_failing_job_shows_in_its_own_page_and_another_session_trains_on(tmp_path, tiny_data_dir):
    from leviathan_explore.dashboard.train import TrainTab

    broken = _break_corpus(tiny_data_dir, tmp_path / "broken")
    failing = TrainTab(tmp_path / "runs", steps=2, batch_size=2, seq_len=16, corpus=str(broken))
    healthy = TrainTab(tmp_path / "runs", steps=2, batch_size=2, seq_len=16, corpus=str(tiny_data_dir))
    failing.start()
    healthy.start()
    _drain_until_done(failing)
    _drain_until_done(healthy)
    assert failing.job.state == "failed" and not failing.job.thread.is_alive()
    assert failing.error.visible and "Training failed" in failing.error.object and "train\\.bin" in failing.error.object
    assert healthy.job.state == "finished" and not healthy.error.visible
    assert "runs saved in" in healthy.status.object
    assert failing.start() is not None  # the page can start again after a failure
    _drain_until_done(failing)


# the text a pane shows, through its shadow root, without its stylesheets
SHOWN_TEXT = ("e => Array.from((e.shadowRoot || e).children).filter(c => !['STYLE', 'LINK'].includes(c.tagName))"
              ".map(c => c.innerText).join(' ').trim()")


def _what_the_page_shows(page, served) -> str:
    """The Train tab's status, error and fields as the page shows them, and the server's last lines."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    def shown(selector: str) -> str:
        where = page.locator(selector)
        try:
            if where.count() == 0:
                return "(absent)"
            box = where.first.locator("input, select")
            if box.count():
                return box.first.input_value(timeout=5_000)
            return where.first.evaluate(SHOWN_TEXT, timeout=5_000)
        except PlaywrightTimeout:
            return "(unreadable)"
    seen = {sel: shown(sel) for sel in (".train-status", ".train-error", ".train-plan", ".train-corpus",
                                        ".field-steps", ".field-batch_size", ".field-seq_len")}
    return f"the page showed {seen}; server log:\n{served.log()}"


def _wait_for_text(page, text: str | re.Pattern, timeout_ms: int, served) -> None:
    """Wait for ``text`` on ``page``; on a timeout, fail with what its Train tab and the server showed."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.get_by_text(text).first.wait_for(timeout=timeout_ms)
    except PlaywrightTimeout:
        pytest.fail(f"{text!r} not shown within {timeout_ms / 1000:.0f} s; {_what_the_page_shows(page, served)}")


def _start_small_pair(page, corpus: str, served) -> None:
    """On the Train tab: ``corpus``, 3 steps of 2 x 16 tokens, then start.

    Each setting is made once the server has taken the one before, as the plan line (the
    server's reading of the settings) shows: a new corpus or sequence length re-draws the other
    fields' labels, and an entry typed while its box is re-drawn could be lost (seen under load:
    the batch box arrived empty and the start was refused). The status leaving "Press start"
    shows the server took the click."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.locator(".bk-tab", has_text="Train").click()
    page.get_by_text("Press start to train").first.wait_for(timeout=180_000)
    select = page.locator(".bk-input-group", has_text="corpus").locator("select").first
    select.select_option(label=next(o for o in select.locator("option").all_inner_texts()
                                    if o.startswith(corpus + " ")))
    _wait_for_text(page, re.compile(rf"corpus {corpus}\.$"), 60_000, served)
    for label, value, plan in (("steps (each model)", "3", r"3 steps each of"),
                               ("batch size (sequences)", "2", r"3 steps each of 1 x 2 x"),
                               ("sequence length", "16",
                                rf"3 steps each of 1 x 2 x 16 = 32 tokens.*corpus {corpus}\.$")):
        box = page.locator(".bk-input-group", has_text=label).locator("input").first
        box.fill(value)
        box.press("Enter")
        _wait_for_text(page, re.compile(plan), 60_000, served)
    page.get_by_role("button", name="start").click()
    try:
        page.locator(".train-status").get_by_text("Press start to train").wait_for(state="hidden", timeout=60_000)
    except PlaywrightTimeout:
        pytest.fail(f"the start click was not taken within 60 s; {_what_the_page_shows(page, served)}")


@pytest.mark.browser
def test_a_worker_failure_in_the_served_app_stays_in_that_page(served):
    if shutil.which("chromium") is None:
        pytest.skip("Debian's chromium is not installed (scripts/test.sh installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    bench = load_benchmark()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), headless=True, args=bench.CHROMIUM_ARGS)
        pages = []
        try:
            for corpus in ("broken", "good"):
                context = browser.new_context(viewport={"width": 1400, "height": 1000})
                page = context.new_page()
                page.goto(served.url, timeout=180_000)
                page.locator(bench.EMBEDDING_CELL).wait_for(timeout=180_000)
                _start_small_pair(page, corpus, served)
                pages.append((corpus, context, page))
            bad, good = pages[0][2], pages[1][2]
            external = []
            for _, _, page in pages:
                page.on("request", lambda r: external.append(r.url) if bench.is_external(r.url) else None)
            _wait_for_text(bad, "Training failed", 180_000, served)
            assert bad.get_by_text(re.compile(r"train\.bin is missing")).count() == 1
            _wait_for_text(good, "runs saved in", 300_000, served)
            assert good.get_by_text("Training failed").count() == 0
            assert external == [], f"a training page fetched resources from outside this machine: {external}"
        finally:
            for _, context, _ in pages:
                context.close()
            browser.close()
    assert served.alive()


# ---- the load benchmark, small ---------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.timeout(1500)
def test_load_benchmark_with_one_and_two_sessions(tmp_path):
    """benchmarks/load_dashboard.py at N = 1, 2 with 5-step jobs: its numbers are sane and it passes."""
    import subprocess
    import sys

    if shutil.which("chromium") is None:
        pytest.skip("Debian's chromium is not installed (scripts/test.sh installs it)")
    out = tmp_path / "load.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "load_dashboard.py"), "--sessions", "1", "2",
                           "--steps", "5", "--moves", "2", "--timeout", "300", "--json", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=1400)
    report = json.loads(out.read_text())
    assert [lv["sessions"] for lv in report["levels"]] == [1, 2]
    for level in report["levels"]:
        n = level["sessions"]
        assert level["all_finished"] and level["jobs_finished"] == n, level["problems"]
        assert level["server_up"] and not level["cross_session_data"]
        assert level["slider_ms"]["count"] == 2 * n and 0 < level["slider_ms"]["p50"] <= level["slider_ms"]["p95"]
        assert 0 < level["first_page_s"]["p50"] <= level["first_page_s"]["max"]
        assert level["server_rss_mb"]["peak"] >= level["server_rss_mb"]["end"] > 50
    closed = report["disconnect"]
    assert closed["stopped_early"] and not closed["second_model_started"]
    assert closed["stop_after_close_s"] is not None and closed["stop_after_close_s"] < 30
    assert report["server_up_at_end"] and report["server_exit_code"] == 0 and report["server_tracebacks"] == []
    stuck = [f"N={lv['sessions']} session {s['session']}: {s.get('train_points', 0)} of 10 train points drawn, "
             f"page errors {[e for e in s.get('page_errors', []) if 'request' not in e][:1]}"
             for lv in report["levels"] for s in lv["per_session"]
             if not (s.get("curve_complete") and s.get("page_showed_end"))]
    assert not stuck, f"pages stopped following their finished jobs: {'; '.join(stuck)}"
    assert all(level["external_requests"] == [] for level in report["levels"]), report["levels"]
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


@pytest.mark.browser
def test_a_page_that_trained_and_switched_tabs_fetches_nothing_from_outside(served):
    if shutil.which("chromium") is None:
        pytest.skip("Debian's chromium is not installed (scripts/test.sh installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    bench = load_benchmark()
    external: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), headless=True, args=bench.CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            page.on("request", lambda r: external.append(r.url) if bench.is_external(r.url) else None)
            page.goto(served.url, timeout=180_000)
            page.locator(bench.EMBEDDING_CELL).wait_for(timeout=180_000)
            _start_small_pair(page, "good", served)
            page.locator(".bk-tab", has_text="Parameter allocation").click()
            page.locator(bench.EMBEDDING_CELL).wait_for(timeout=120_000)
            page.locator(".bk-tab", has_text="Train").click()
            page.get_by_text("runs saved in").first.wait_for(timeout=300_000)
            page.wait_for_timeout(2000)
        finally:
            browser.close()
    assert external == [], f"requests that left this machine: {sorted(set(external))}"
