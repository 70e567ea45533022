"""The Leviathan explorer: five tabs in a Panel template, one per module of this package.

Serve it with ``leviathan-explore serve`` (binds 127.0.0.1:5006 unless told
otherwise) or ``panel serve leviathan_explore/dashboard/app.py`` (runs directory
from ``$LEVIATHAN_EXPLORE_RUNS``, default ``runs/``; studies and committed sweeps from
``$LEVIATHAN_EXPLORE_SWEEPS``, default ``results/sweeps``). Each browser session gets
its own tabs; only the first tab is computed at load, the others when first
opened, so the page appears in seconds. A tab is put on the page when it is first
opened and then kept (``Tabs(dynamic=False)`` over slots filled on demand): with
``dynamic=True`` every switch re-rendered the tab, and a switch that raced with a
live-curve update left the whole Train tab blank (plotly.js failed on a half-built
plot). Every resource is served by this server (Bokeh/Panel/plotly.js bundles, no
web fonts): nothing is fetched from the internet.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import weakref
from pathlib import Path

import panel as pn

# Absolute imports: `panel serve app.py` runs this file as a script, outside the package.
from leviathan_explore.dashboard.allocation import AllocationTab
from leviathan_explore.dashboard.anatomy import AnatomyTab
from leviathan_explore.dashboard.common import DEFAULT_RUNS_DIR
from leviathan_explore.dashboard.geometry import GeometryTab
from leviathan_explore.dashboard.scaling import ScalingTab
from leviathan_explore.dashboard.state import ExplorerState
from leviathan_explore.dashboard.train import TrainTab

RUNS_ENV = "LEVIATHAN_EXPLORE_RUNS"
SWEEPS_ENV = "LEVIATHAN_EXPLORE_SWEEPS"  # where the Scaling tab finds studies and sweeps
_LIVE_APPS: "weakref.WeakSet[ExplorerApp]" = weakref.WeakSet()  # for stopping jobs at shutdown
TITLE = "Leviathan explorer"
TAB_TITLES = ("Parameter allocation", "Anatomy of a token", "Train", "Embedding geometry", "Scaling")
# keep_panel_css_local patches a private function of this Panel release (pyproject pins it; a test checks both)
PATCHED_FOR_PANEL = "1.9.4"

pn.extension("plotly", notifications=False)

INTRO = (
    "Small language models spend a large share of their parameters on the token embedding table. "
    "**Leviathan** (Batley & Saha, arXiv 2601.22040) replaces that table with a small continuous "
    "generator: a token id becomes base-*b* digits, codebook rows, per-mode sigmoid coordinates and "
    "products of B-splines. Start with *Parameter allocation*, follow a token in *Anatomy*, train a "
    "pair in *Train*, and compare the learned spaces and scaling in the last two tabs."
)


class ExplorerApp:
    """One session's tabs (each tab a ``pn.viewable.Viewer``), the state they share, and
    their lazy construction: a tab other than the first is built when first opened (or first
    asked for), so the first page costs one tab."""

    def __init__(self, runs_dir: str | os.PathLike | None = None, sweeps_root: str | os.PathLike | None = None):
        self.runs_dir = Path(runs_dir or os.environ.get(RUNS_ENV) or DEFAULT_RUNS_DIR)
        sweeps_root = sweeps_root or os.environ.get(SWEEPS_ENV)
        self.sweeps_root = Path(sweeps_root) if sweeps_root else None  # None: results/sweeps of the checkout
        self.state = ExplorerState(self.runs_dir)
        self._factories = (AllocationTab, lambda: AnatomyTab(self.state), lambda: TrainTab(state=self.state),
                           lambda: GeometryTab(self.state),
                           lambda: ScalingTab(self.state, sweeps_root=self.sweeps_root))
        self._built: dict[int, pn.viewable.Viewer] = {}
        # one slot per tab, filled when the tab is first shown and kept: the first page carries one
        # tab's widgets, and a tab, once built, is never re-rendered by a switch
        self.slots = [pn.Column(sizing_mode="stretch_width") for _ in self._factories]
        self.slots[0].objects = [self.tab(0)]
        self.tabs = pn.Tabs(*zip(TAB_TITLES, self.slots), dynamic=False, sizing_mode="stretch_width")
        self.tabs.param.watch(self._on_tab, "active")

    def tab(self, index: int) -> pn.viewable.Viewer:
        if index not in self._built:
            self._built[index] = self._factories[index]()
        return self._built[index]

    allocation = property(lambda self: self.tab(0))
    anatomy = property(lambda self: self.tab(1))
    train = property(lambda self: self.tab(2))
    geometry = property(lambda self: self.tab(3))
    scaling = property(lambda self: self.tab(4))

    @property
    def tab_objects(self) -> list:
        return [self.tab(i) for i in range(len(self._factories))]

    def _on_tab(self, event) -> None:
        tab, slot = self.tab(event.new), self.slots[event.new]
        if hasattr(tab, "activate"):
            # before the tab is put on the page: its lists arrive with their chosen values (a Select
            # whose options and value change right after it is first drawn shows its first option)
            tab.activate()
        if not slot.objects:
            slot.objects = [tab]

    def shutdown(self) -> None:
        """The browser session closed: stop its training job and its timers (of the tabs built)."""
        for tab in self._built.values():
            if hasattr(tab, "shutdown"):
                tab.shutdown()

    def template(self) -> pn.template.BootstrapTemplate:
        page = pn.template.BootstrapTemplate(title=TITLE, header_background="#3b6ea8")
        page.main.append(pn.Column(pn.pane.Markdown(INTRO, sizing_mode="stretch_width"), self.tabs,
                                   sizing_mode="stretch_width"))
        return page


def create_app(runs_dir: str | os.PathLike | None = None) -> pn.template.BootstrapTemplate:
    """A new session's page; the session's training job stops when the session is destroyed."""
    app = ExplorerApp(runs_dir)
    _LIVE_APPS.add(app)
    if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
        pn.state.on_session_destroyed(lambda context: app.shutdown())
    return app.template()


def serve(*, port: int = 5006, address: str = "127.0.0.1", allow_websocket_origin: list[str] | None = None,
          runs_dir: str | os.PathLike | None = None, show: bool = False) -> None:
    """Serve the explorer until interrupted (the ``leviathan-explore serve`` command)."""
    origins = list(allow_websocket_origin or []) or [f"localhost:{port}", f"127.0.0.1:{port}"]
    if address not in ("127.0.0.1", "localhost") and not allow_websocket_origin:
        origins.append(f"{address}:{port}")
    runs = Path(runs_dir or os.environ.get(RUNS_ENV) or DEFAULT_RUNS_DIR)
    from bokeh.settings import settings

    settings.resources = "server"  # bundles from this server, never a CDN (the default of pn.serve is cdn)
    keep_panel_css_local()

    def session_page():  # a plain function: pn.serve would render a functools.partial as text
        return create_app(runs)

    server = pn.serve({"/": session_page}, port=port, address=address, websocket_origin=origins,
                      show=show, title=TITLE, verbose=False, start=False,
                      warm=True,  # build one throwaway session first: imports and caches warm up before "ready"
                      # sessions closed in the browser are cleaned up (their jobs stopped) within seconds
                      check_unused_sessions_milliseconds=2000, unused_session_lifetime_milliseconds=5000)
    # printed once the socket is bound: a test or a script may wait for this line
    print(f"{TITLE}: http://{'localhost' if address in ('127.0.0.1', 'localhost') else address}:{port}/ "
          f"(runs directory {runs}; Ctrl-C stops)", flush=True)
    # SIGTERM stops like Ctrl-C (panel handles SIGINT): running jobs get to write their summaries
    signal.signal(signal.SIGTERM, lambda *_: server.io_loop.asyncio_loop.call_soon_threadsafe(server.io_loop.stop))
    server.start()
    try:
        server.io_loop.start()
    finally:
        stop_all_jobs()


def keep_panel_css_local() -> None:
    """Make Panel point every component stylesheet at this server, also for models built off-page.

    Panel rewrites its components' CDN stylesheet URLs to the server's own copies using the
    document's ``dist_url``; a model that is updated while detached from its document (seen
    with ``Tabs(dynamic=True)``: the Train tab's status updated while another tab was shown)
    has none, so Panel 1.9 falls back to cdn.holoviz.org and the browser fetched loading.css and
    markdown.css from the internet. With server resources, that fallback is this server.
    """
    from panel import reactive
    from panel.io import resources

    if pn.__version__ != PATCHED_FOR_PANEL:
        print(f"warning: Panel {pn.__version__} is not the {PATCHED_FOR_PANEL} this app's stylesheet patch was "
              f"tested with; the patch is skipped, and a pane updated off-page may fetch its CSS from the CDN",
              file=sys.stderr)
        return
    if getattr(resources.patch_stylesheet, "_local_fallback", False):
        return
    original = resources.patch_stylesheet

    def patch_stylesheet(stylesheet, dist_url):
        if dist_url == resources.CDN_DIST and not resources.use_cdn():
            dist_url = resources.get_dist_path(cdn=False)
        return original(stylesheet, dist_url)

    patch_stylesheet._local_fallback = True
    resources.patch_stylesheet = reactive.patch_stylesheet = patch_stylesheet


def stop_all_jobs(timeout_s: float = 60.0) -> None:
    """Ask every session's training job to stop and wait for the trainers to write their summaries."""
    apps = list(_LIVE_APPS)
    for app in apps:
        app.shutdown()
    deadline = time.monotonic() + timeout_s
    for app in apps:
        train = app._built.get(2)
        job = train.job if train is not None else None
        if job is not None and job.thread.is_alive():
            job.thread.join(max(0.0, deadline - time.monotonic()))


if __name__.startswith("bokeh"):  # `panel serve leviathan_explore/dashboard/app.py`
    create_app().servable(title=TITLE)
