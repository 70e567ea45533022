"""The state every tab of one browser session shares: the runs directory, what is in it,
and the chosen embeddings source (loaded in the background, then read by the anatomy and
geometry tabs).

Tabs take an ``ExplorerState`` as an input and bind their views to its parameters
(``param.depends`` / ``pn.bind``); nothing is pushed into another tab by hand. The
lists are refreshed when a tab opens and when a training job of the session ends
(``refresh``), so a run trained a minute ago is offered everywhere.
"""

from __future__ import annotations

from pathlib import Path

import param

from ..analysis.registry import scan_runs
from .common import DEFAULT_RUNS_DIR, LatestRequest
from .sources import UNTRAINED, default_source, load_source, source_options


class ExplorerState(param.Parameterized):
    runs_dir = param.ClassSelector(class_=Path, default=Path(DEFAULT_RUNS_DIR), constant=True)
    runs = param.List(default=[], doc="registry.RunRecord of every run under runs_dir, newest first")
    run_problems = param.List(default=[], doc="one line per unreadable run or a missing runs directory")
    source_options = param.Dict(default={UNTRAINED: UNTRAINED}, doc="label -> embeddings source key")
    source = param.String(default=UNTRAINED, doc="the chosen embeddings source (anatomy and geometry)")
    embeddings = param.Parameter(default=None, doc="the loaded analysis.embedding_sources.EmbeddingSource of `source`")
    embeddings_error = param.String(default="", doc="why `source` could not be loaded (plain text)")
    embeddings_loading = param.Boolean(default=False)
    refreshed = param.Integer(default=0, doc="counts refreshes: views that list runs depend on it")

    def __init__(self, runs_dir: str | Path = DEFAULT_RUNS_DIR, **params):
        super().__init__(runs_dir=Path(runs_dir), **params)
        self._wanted = False  # no tab has asked for embeddings yet: the first page loads none
        self._chosen_by_user = False
        self._trained_here: str | None = None  # the newest run this session trained
        self._loader = LatestRequest("embeddings", on_error=self._loaded)

    # ---- runs -------------------------------------------------------------------------------
    def refresh(self, prefer: str | None = None) -> None:
        """Scan the runs directory again and update every list derived from it. ``prefer``: a
        source to show unless the user picked one (the run this session just trained), else
        the default (the newest finished run)."""
        try:
            runs, problems = scan_runs(self.runs_dir)
        except FileNotFoundError as exc:
            runs, problems = [], [f"{exc}; showing the shipped demo and an untrained model"]
        options, problems = source_options(self.runs_dir, runs, problems)
        self._trained_here = prefer or self._trained_here
        with param.parameterized.batch_call_watchers(self):
            self.runs, self.run_problems, self.source_options = runs, problems, options
            if self.source not in options.values() or not self._chosen_by_user:
                mine = self._trained_here
                self.param.update(source=mine if mine in options.values() else default_source(options))
            self.refreshed += 1

    def choose_source(self, key: str) -> None:
        """The user picked ``key`` in a source list (kept across refreshes)."""
        if key in self.source_options.values():
            self._chosen_by_user = True
            self.source = key

    # ---- embeddings --------------------------------------------------------------------------
    def embeddings_tab_shown(self, tab) -> bool:
        """A tab that shows embeddings (anatomy, geometry) is shown: the run lists are scanned again.
        The first time (``tab.active`` still False) the tab is marked active and the chosen source
        starts loading; True then, so that the tab draws itself."""
        self.refresh()
        if tab.active:
            return False
        tab.active = True
        self.want_embeddings()
        return True

    def want_embeddings(self) -> None:
        """A tab that shows embeddings opened: load the chosen source from now on."""
        if not self._wanted:
            self._wanted = True
            self._load()

    @param.depends("source", watch=True)
    def _load(self) -> None:
        if not self._wanted:
            return
        key = self.source
        self.param.update(embeddings_loading=True, embeddings_error="")
        self._loader.submit(lambda: load_source(key, self.runs_dir), self._loaded)

    def _loaded(self, result) -> None:
        if isinstance(result, BaseException):
            text = str(result).strip().splitlines()
            if not isinstance(result, (ValueError, FileNotFoundError, OSError)):
                text = [f"{type(result).__name__}: {text[0] if text else ''}"]
            self.param.update(embeddings=None, embeddings_error=text[0] if text else type(result).__name__,
                              embeddings_loading=False)
        else:
            self.param.update(embeddings=result, embeddings_error="", embeddings_loading=False)
