"""Load test of the dashboard: N browser sessions at once, each training a pair and watching it.

    python benchmarks/load_dashboard.py                       # N = 1, 4, 8
    python benchmarks/load_dashboard.py --sessions 1 2 --steps 10 --json /tmp/load.json

Starts one ``leviathan-explore serve`` on a free port (cwd: the repository, so the
embedded corpus in data/shards/ is shared; runs go to a temporary directory) and,
for each N, opens N Playwright contexts in one headless Debian Chromium. Every
session loads the page, starts a short CPU training pair on the Train tab, moves
the width slider of the Allocation tab while it trains, then waits for its run to
finish and reads its own loss curve. Reported per N: time to first page, p50/p95
latency of a slider move (key press to the table showing the new count), whether
every job finished, the server's resident memory (psutil, peak and end), and
whether any page showed another session's run. Afterwards one more session starts
a long job and closes its page: the job must stop (its summary.json is written,
the trainer thread ends) within seconds. The server must stay up throughout.

Writes JSON (default ``results/robustness/load_dashboard.json``) and prints a table.
Needs Debian's chromium (``apt-get install -y chromium``) and the ``playwright`` package.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
DEFAULT_JSON = REPO / "results" / "robustness" / "load_dashboard.json"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]
EMBEDDING_CELL = "td[data-block='embedding'][data-model='dense']"
READY_LINE = "Leviathan explorer: http://"
GRACE_S = 60  # seconds a page may lag behind its finished job before it counts as stuck
SCREENSHOTS = REPO / "test-artifacts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def is_external(url: str) -> bool:
    """Whether a request leaves this machine (the app promises to serve every resource itself)."""
    if url.startswith(("data:", "blob:", "about:")):
        return False
    host = url.split("/")[2].split(":")[0] if "://" in url else ""
    return host not in ("localhost", "127.0.0.1", "[::1]")


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0-100) by linear interpolation; None for no values."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo, hi = int(pos), min(int(pos) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


# Tornado logs these when a browser closes while the server is still sending to it: noise, not a failure.
CLOSED_CONNECTION_ERRORS = ("tornado.websocket.WebSocketClosedError", "tornado.iostream.StreamClosedError")


def unexpected_tracebacks(log: str) -> list[str]:
    """The exception lines of the tracebacks in a server log, except a closed browser connection's."""
    found, inside = [], False
    for line in log.splitlines():
        if line.startswith("Traceback (most recent call last):"):
            inside = True
        elif inside and line and not line.startswith(" "):
            inside = False  # the first unindented line after the frames names the exception
            if not line.startswith(CLOSED_CONNECTION_ERRORS):
                found.append(line)
    return found


def _die_with_parent() -> None:
    """In the server's process (Linux): receive SIGTERM when the benchmark dies, so no server is orphaned."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Server:
    """``leviathan-explore serve`` in a subprocess; its output is kept for the report."""

    def __init__(self, runs: Path, port: int | None = None, cwd: Path = REPO, extra_env: dict | None = None):
        self.runs, self.port = runs, port or free_port()
        self.url = f"http://localhost:{self.port}/"
        exe = Path(sys.executable).with_name("leviathan-explore")
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "leviathan_explore.cli"]
        self.proc = subprocess.Popen(cmd + ["serve", "--port", str(self.port), "--runs", str(runs), "--no-show"],
                                     cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1", **(extra_env or {})},
                                     preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        self.ps = psutil.Process(self.proc.pid)
        self.lines: list[str] = []
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)
            if line.startswith(READY_LINE):
                self.ready.set()

    def wait_ready(self, timeout: float = 240) -> None:
        if not self.ready.wait(timeout):
            raise RuntimeError(f"the server did not start within {timeout:.0f} s:\n{self.log()}")

    def log(self, n: int = 40) -> str:
        return "".join(self.lines[-n:])

    def alive(self) -> bool:
        """The process runs and answers an HTTP request for the page."""
        if self.proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(self.url, timeout=30) as response:
                return response.status == 200
        except OSError:
            return False

    def rss_mb(self) -> float:
        return self.ps.memory_info().rss / 2**20

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # like Ctrl-C: running jobs write their summaries
            try:
                self.proc.wait(90)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


# ---- one browser session -----------------------------------------------------------------------

async def _tab(page, title: str) -> None:
    await page.locator(".bk-tab", has_text=title).click()


async def _set_input(page, label: str, value: str) -> None:
    box = page.locator(".bk-input-group", has_text=label).locator("input").first
    await box.fill(value)
    await box.press("Enter")


async def _plot_titles(page) -> list[str]:
    return [await plot.evaluate("el => (el.layout && el.layout.title && el.layout.title.text) || ''")
            for plot in await page.locator(".js-plotly-plot").all()]


async def _traces(page) -> list[tuple[str, int]]:
    out = []
    for plot in await page.locator(".js-plotly-plot").all():
        data = await plot.evaluate("el => (el.data || []).map(t => [t.name || '', (t.x || []).length])")
        out.extend((name, n) for name, n in data)
    return out


async def open_page(browser, url: str):
    """A new context and page; (context, page, seconds to the first tab's numbers, errors)."""
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url} ({r.failure})"))
    page.on("request", lambda r: errors.append(f"external request: {r.url}") if is_external(r.url) else None)
    start = time.monotonic()
    await page.goto(url, timeout=180_000)
    await page.locator(EMBEDDING_CELL).wait_for(timeout=180_000)
    return context, page, time.monotonic() - start, errors


async def start_training(page, steps: int, batch: int = 2, seq_len: int = 16) -> str:
    """Start a pair on the Train tab; the run name the page chose."""
    await _tab(page, "Train")
    await page.get_by_text("Press start to train").first.wait_for(timeout=180_000)
    await _set_input(page, "steps (each model)", str(steps))
    await _set_input(page, "batch size (sequences)", str(batch))
    await _set_input(page, "sequence length", str(seq_len))
    name = await page.locator(".bk-input-group", has_text="run name").locator("input").first.input_value()
    await page.get_by_role("button", name="start").click()
    await page.get_by_text(f"{name}").first.wait_for(timeout=60_000)
    return name


async def slider_latencies(page, moves: int) -> list[float]:
    """Milliseconds from a key press on the width slider to the table showing the new count."""
    await _tab(page, "Parameter allocation")
    cell = page.locator(EMBEDDING_CELL)
    await cell.wait_for(timeout=120_000)
    handle = page.locator(".noUi-handle").first
    out = []
    for i in range(moves):
        before = await cell.inner_text()
        await handle.focus()
        start = time.monotonic()
        await handle.press("ArrowRight" if i % 2 == 0 else "ArrowLeft")
        # Bokeh renders into shadow roots, which only Playwright's locators pierce: poll the cell
        while await cell.inner_text() == before:
            if time.monotonic() - start > 120:
                raise TimeoutError(f"the table did not change within 120 s of slider move {i + 1}")
            await asyncio.sleep(0.005)
        out.append(1000 * (time.monotonic() - start))
    return out


async def one_session(browser, url: str, runs: Path, index: int, steps: int, moves: int,
                      timeout_s: float, n_sessions: int = 1) -> dict:
    result: dict = {"session": index}
    context, page, first_page, errors = await open_page(browser, url)
    result["first_page_s"] = first_page
    try:
        name = await start_training(page, steps)
        result["run"] = name
        result["slider_ms"] = await slider_latencies(page, moves)
        await _tab(page, "Train")
        done = page.get_by_text("runs saved in").first
        failed = page.get_by_text("Training failed").first
        summaries_written = [runs / name / arch / "summary.json" for arch in ("dense", "leviathan")]
        deadline, grace_until = time.monotonic() + timeout_s, None
        result["page_showed_end"] = False
        while time.monotonic() < deadline:
            if await done.count() or await failed.count():
                result["page_showed_end"] = True
                break
            if grace_until is None and all(p.is_file() for p in summaries_written):
                grace_until = time.monotonic() + GRACE_S  # the job is over: the page has this long to show it
            if grace_until is not None and time.monotonic() > grace_until:
                break
            await asyncio.sleep(0.5)
        await page.wait_for_timeout(300)
        traces = await _traces(page)
        curves = [(t, n) for t, n in traces if t.endswith((" train", " val"))]
        result["traces"] = curves
        result["train_points"] = sum(n for t, n in curves if t.endswith(" train"))
        result["curve_complete"] = result["train_points"] == 2 * steps  # every step of both models drawn
        if not (result["page_showed_end"] and result["curve_complete"]):
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shot = SCREENSHOTS / f"load-n{n_sessions}-session{index}.png"
            await page.screenshot(path=str(shot))
            result["screenshot"] = str(shot.relative_to(REPO))
        # the loss plot names its run in its title (the legend names the two models)
        result["foreign_traces"] = [t for t in await _plot_titles(page) if t.startswith("Loss of") and name not in t]
        summaries = {}
        for arch in ("dense", "leviathan"):
            path = runs / name / arch / "summary.json"
            summaries[arch] = json.loads(path.read_text()) if path.is_file() else None
        result["finished"] = all(s is not None and s.get("finished") and s.get("steps") == steps
                                 for s in summaries.values())
        result["failed_message"] = await failed.inner_text() if await failed.count() else None
    except Exception as exc:  # reported, not raised: the other sessions still count
        result["exception"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        result.setdefault("finished", False)
        result.setdefault("foreign_traces", [])
    finally:
        result["page_errors"] = list(dict.fromkeys(errors))  # distinct, in order: keeps the JSON small
        await context.close()
    return result


async def run_level(browser, server: Server, n: int, steps: int, moves: int, timeout_s: float) -> dict:
    """N sessions at once; memory sampled every 0.25 s."""
    peak = [server.rss_mb()]
    stop = asyncio.Event()

    async def sample():
        while not stop.is_set():
            try:
                peak.append(server.rss_mb())
            except psutil.Error:
                break
            await asyncio.sleep(0.25)

    sampler = asyncio.create_task(sample())
    start = time.monotonic()
    sessions = await asyncio.gather(*(one_session(browser, server.url, server.runs, i, steps, moves, timeout_s, n)
                                      for i in range(n)))
    wall = time.monotonic() - start
    stop.set()
    await sampler
    slider = [ms for s in sessions for ms in s.get("slider_ms", [])]
    first = [s["first_page_s"] for s in sessions if "first_page_s" in s]
    names = [s.get("run") for s in sessions]
    return {
        "sessions": n,
        "steps_per_model": steps,
        "wall_s": wall,
        "first_page_s": {"p50": percentile(first, 50), "max": max(first, default=None)},
        "slider_ms": {"p50": percentile(slider, 50), "p95": percentile(slider, 95), "count": len(slider)},
        "jobs_finished": sum(bool(s.get("finished")) for s in sessions),
        "all_finished": all(s.get("finished") for s in sessions),
        "live_curves_complete": sum(bool(s.get("curve_complete")) for s in sessions),
        "pages_showed_end": sum(bool(s.get("page_showed_end")) for s in sessions),
        "server_rss_mb": {"peak": max(peak), "end": server.rss_mb()},
        "cross_session_data": any(s.get("foreign_traces") for s in sessions) or len(set(names)) != len(names),
        "external_requests": sorted({e.split(": ", 1)[1] for s in sessions for e in s.get("page_errors", [])
                                     if e.startswith("external request: ")}),
        "server_up": server.alive(),
        "problems": [f"session {s['session']}: {s['exception']}" for s in sessions if "exception" in s]
                    + sorted({e for s in sessions for e in s.get("page_errors", [])})
                    + [f"session {s['session']}: {s['failed_message']}" for s in sessions if s.get("failed_message")],
        "per_session": [{k: v for k, v in s.items() if k != "traces"} for s in sessions],
    }


async def disconnect_check(browser, server: Server, timeout_s: float = 120) -> dict:
    """A long job whose page closes: seconds until its trainer wrote the summary and its thread ended."""
    context, page, _, _ = await open_page(browser, server.url)
    name = await start_training(page, 5000)  # the most steps a page may ask for
    metrics = server.runs / name / "dense" / "metrics.jsonl"
    deadline = time.monotonic() + timeout_s
    while not (metrics.is_file() and metrics.stat().st_size) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    threads_training = server.ps.num_threads()
    closed = time.monotonic()
    await context.close()
    summary = server.runs / name / "dense" / "summary.json"
    while not summary.is_file() and time.monotonic() - closed < timeout_s:
        await asyncio.sleep(0.1)
    stopped_s = time.monotonic() - closed if summary.is_file() else None
    await asyncio.sleep(1.0)  # the thread returns right after the summary is written
    data = json.loads(summary.read_text()) if summary.is_file() else {}
    return {"run": name, "stop_after_close_s": stopped_s, "stopped_early": data.get("stopped_early"),
            "steps_done": data.get("steps"), "second_model_started": (server.runs / name / "leviathan").exists(),
            "server_threads_while_training": threads_training, "server_threads_after": server.ps.num_threads(),
            "server_up": server.alive()}


def prepare_corpus() -> float:
    """Build the embedded corpus the Train tab uses (once per checkout), outside the timings."""
    sys.path.insert(0, str(REPO))
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        from leviathan_explore.data.catalog import ensure_corpus

        start = time.monotonic()
        ensure_corpus()
        return time.monotonic() - start
    finally:
        os.chdir(cwd)


async def run_benchmark(levels: list[int], steps: int, moves: int, timeout_s: float, disconnect: bool) -> dict:
    from playwright.async_api import async_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("chromium is not installed: apt-get install -y chromium")
    corpus_s = prepare_corpus()
    runs = Path(tempfile.mkdtemp(prefix="load-dashboard-runs-"))
    server = Server(runs)
    report: dict = {"levels": [], "corpus_prepare_s": corpus_s}
    try:
        server.wait_ready()
        report["server_rss_mb_idle"] = server.rss_mb()
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
            try:
                for n in levels:
                    level = await run_level(browser, server, n, steps, moves, timeout_s)
                    report["levels"].append(level)
                    print(format_level(level), flush=True)
                if disconnect:
                    report["disconnect"] = await disconnect_check(browser, server)
            finally:
                await browser.close()
        report["server_up_at_end"] = server.alive()
    finally:
        code = server.stop()
        report["server_exit_code"] = code
        report["server_tracebacks"] = unexpected_tracebacks("".join(server.lines))
        report["server_log_tail"] = server.log(15)
        shutil.rmtree(runs, ignore_errors=True)
    return report


def format_level(level: dict) -> str:
    f = level["first_page_s"]
    s = level["slider_ms"]
    return (f"N={level['sessions']}: first page p50 {f['p50']:.2f} s (max {f['max']:.2f} s); slider p50 "
            f"{(s['p50'] or 0):.0f} ms, p95 {(s['p95'] or 0):.0f} ms ({s['count']} moves); jobs finished "
            f"{level['jobs_finished']}/{level['sessions']}; complete live curves {level['live_curves_complete']}/"
            f"{level['sessions']}; server RSS peak {level['server_rss_mb']['peak']:.0f} MB; "
            f"cross-session data: {'YES' if level['cross_session_data'] else 'no'}; server up: "
            f"{'yes' if level['server_up'] else 'NO'}; {level['wall_s']:.0f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 4, 8], metavar="N",
                        help="concurrent sessions per level (default: 1 4 8)")
    parser.add_argument("--steps", type=int, default=20, help="training steps per model (default: 20)")
    parser.add_argument("--moves", type=int, default=5, help="slider moves per session (default: 5)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds a session waits for its job (900)")
    parser.add_argument("--no-disconnect", action="store_true", help="skip the closed-session check")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"output file (default: {DEFAULT_JSON})")
    args = parser.parse_args(argv)
    if any(n < 1 for n in args.sessions) or args.steps < 1 or args.moves < 1:
        parser.error("--sessions, --steps and --moves must be positive")
    started = time.time()
    report = asyncio.run(run_benchmark(args.sessions, args.steps, args.moves, args.timeout, not args.no_disconnect))
    report["command"] = "python benchmarks/load_dashboard.py " + " ".join(
        ["--sessions", *map(str, args.sessions), "--steps", str(args.steps), "--moves", str(args.moves)]
        + (["--no-disconnect"] if args.no_disconnect else []))
    report["machine"] = {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                         "load_average_at_start": list(os.getloadavg()), "python": platform.python_version()}
    report["wall_s"] = time.time() - started
    if "disconnect" in report:
        d = report["disconnect"]
        print(f"closed session: job stopped {d['stop_after_close_s']} s after the page closed "
              f"(stopped_early={d['stopped_early']}, second model started: {d['second_model_started']})")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.json.with_name(f".{args.json.name}.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, args.json)
    print(f"wrote {args.json}")
    ok = (all(lv["all_finished"] and lv["server_up"] and not lv["cross_session_data"]
              and lv["live_curves_complete"] == lv["sessions"] for lv in report["levels"])
          and report.get("server_up_at_end", False))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
