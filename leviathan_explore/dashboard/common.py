"""What every tab shares: safe run paths, escaped text, in-page messages, typed numbers with
declared ranges, and one way to compute in the background.

A run name typed into the page goes through ``safe_run_dir``: it may not be
absolute, contain ``..`` or odd characters, or pass through a symbolic link, so
it always names a directory inside the runs directory. Nothing is unpickled:
runs are read as JSON and safetensors only (``analysis.registry``).

Text a user typed, and any message that may quote it, is shown through
``md_escape`` in panes whose Markdown renderer refuses raw HTML (``SAFE_MARKDOWN``):
two independent guards, so that a ``<script>`` or an ``onerror=`` attribute typed
anywhere is shown as text and never runs.
"""

from __future__ import annotations

import math
import os
import re
import threading
from functools import partial
from pathlib import Path
from typing import Any, Callable

import panel as pn
import param

RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
DEFAULT_RUNS_DIR = "runs"
# markdown-it with html=False escapes raw HTML instead of passing it to the page
SAFE_MARKDOWN = {"html": False}
# how much of a rejected entry a message quotes back (a 5,000-digit number is not worth repeating)
QUOTE_CHARS = 40


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def shipped_results_dir() -> Path:
    """``results/`` of the checkout: the shipped demo run and committed sweeps."""
    return repo_root() / "results"


def safe_run_dir(runs_dir: str | os.PathLike, name: str) -> Path:
    """``runs_dir/name`` for a user-typed ``name`` of one or more ``/``-separated parts.

    Raises ValueError naming the problem for: empty or whitespace-only names, absolute
    paths, ``..`` or parts outside ``[A-Za-z0-9._-]`` (starting with a letter or digit),
    and any existing part that is a symbolic link or resolves outside ``runs_dir``.
    """
    if not isinstance(name, str) or name.strip() == "":
        raise ValueError("the run name is empty: use letters, digits, '.', '_' or '-'")
    name = name.strip()
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or os.path.isabs(name):
        raise ValueError(f"run name {name!r} is an absolute path: give a name inside the runs directory")
    parts = name.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise ValueError(f"run name {name!r} may not contain empty, '.' or '..' parts")
        if not RUN_NAME.match(part):
            raise ValueError(f"run name {name!r}: part {part!r} must start with a letter or digit and use "
                             f"only letters, digits, '.', '_' or '-' (at most 100 characters)")
    root = Path(runs_dir).resolve()
    path = root
    for part in parts:
        path = path / part
        if path.is_symlink():
            raise ValueError(f"run name {name!r} passes through a symbolic link ({part}); refused")
    if not path.resolve().is_relative_to(root):
        raise ValueError(f"run name {name!r} resolves outside the runs directory")
    return path


# ---- text -----------------------------------------------------------------------------------

_MD_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")  # every ASCII punctuation character


def md_escape(text: Any) -> str:
    """``text`` as literal Markdown: every ASCII punctuation character backslash-escaped
    (CommonMark allows exactly these), line breaks flattened to spaces."""
    flat = " ".join(str(text).split("\n"))
    return _MD_PUNCTUATION.sub(r"\\\1", flat)


def quote(text: Any, limit: int = QUOTE_CHARS) -> str:
    """A rejected entry as the message repeats it: repr-quoted, cut to ``limit`` characters."""
    s = str(text)
    return repr(s if len(s) <= limit else s[:limit] + "...")


def text_pane(text: str = "", **kwargs) -> pn.pane.Markdown:
    """A Markdown pane that never renders raw HTML."""
    return pn.pane.Markdown(text, renderer_options=SAFE_MARKDOWN, **kwargs)


def message(text: str = "", kind: str = "danger") -> pn.pane.Alert:
    """An in-page message box (no raw HTML), hidden while its text is empty."""
    return pn.pane.Alert(text, alert_type=kind, visible=bool(text), sizing_mode="stretch_width",
                         renderer_options=SAFE_MARKDOWN)


def show(alert: pn.pane.Alert, text: str, kind: str = "danger") -> None:
    """Put Markdown ``text`` (its user-typed parts already ``md_escape``d) in ``alert``."""
    alert.object = text
    alert.alert_type = kind
    alert.visible = bool(text)


def show_problem(alert: pn.pane.Alert, title: str, problem: BaseException | str, kind: str = "danger") -> None:
    """``**title** problem`` with the problem (which may quote user input) escaped."""
    detail = one_line(problem) if isinstance(problem, BaseException) else str(problem)
    show(alert, f"**{title}** {md_escape(detail)}" if title else md_escape(detail), kind)


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message (the user-facing part)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def set_figure(pane: pn.pane.Plotly, figure) -> None:
    """Show ``figure`` in ``pane``; hide the pane for ``None`` (an empty plotly pane draws blank axes)."""
    pane.object = figure
    pane.visible = figure is not None


def labelled(label: str, widget) -> pn.Column:
    """A widget with a visible label above it (button groups have none of their own)."""
    return pn.Column(pn.pane.Markdown(md_escape(label), renderer_options=SAFE_MARKDOWN,
                                      margin=(0, 10, -12, 10), css_classes=["control-label"]),
                     widget, margin=0)


# ---- background work --------------------------------------------------------------------------

class LatestRequest:
    """Run work off the server's event loop; only the newest request's result is delivered.

    ``submit(work, done)``: in a browser session ``work()`` runs in a daemon thread and
    ``done(result)`` (the return value, or the exception raised) on the session's next
    tick, so it may touch the page; a result whose request was superseded by a later
    ``submit`` (or ``cancel``) is dropped. Without a session (tests, notebooks) both run
    inline. An exception raised by ``done`` itself goes to ``on_error`` (an in-page
    message) instead of the server log.
    """

    def __init__(self, name: str, on_error: Callable[[BaseException], None] | None = None):
        self.name = name
        self.on_error = on_error
        self._generation = 0
        self._lock = threading.Lock()
        self.thread: threading.Thread | None = None  # the latest worker (tests join it)

    @property
    def busy(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def cancel(self) -> None:
        with self._lock:
            self._generation += 1

    def submit(self, work: Callable[[], Any], done: Callable[[Any], None]) -> None:
        with self._lock:
            self._generation += 1
            generation = self._generation

        def deliver(result):
            if generation != self._generation:
                return
            try:
                done(result)
            except Exception as exc:  # a bug in a view must not reach the server log
                if self.on_error is None:
                    raise
                self.on_error(exc)

        def compute():
            try:
                return work()
            except Exception as exc:  # handed to done, which shows it in the page
                return exc

        doc = pn.state.curdoc
        if doc is None or doc.session_context is None:
            deliver(compute())
            return

        def target():
            result = compute()
            try:
                doc.add_next_tick_callback(partial(deliver, result))
            except Exception:  # the session closed while this ran: nobody to tell
                pass

        self.thread = threading.Thread(target=target, name=f"dashboard-{self.name}", daemon=True)
        self.thread.start()


# ---- typed numbers ------------------------------------------------------------------------------

class NumberField(pn.viewable.Viewer):
    """A number typed into a text box, with a declared range and the reason for it.

    The value is written to ``owner.<name>`` only when it parses and lies in the range;
    otherwise a message beside the field names the entry and what is allowed, and the
    owner keeps its previous (effective) value. A text box rather than a numeric input:
    the browser's numeric inputs turn 5,000 digits into "Infinity" and send the server
    values its parameters refuse with a traceback.
    """

    valid = param.Boolean(default=True, doc="the box holds the effective value")

    def __init__(self, owner: param.Parameterized, name: str, label: str, *, low: float, high: float,
                 reason: str, integer: bool = True, width: int = 280, **params):
        super().__init__(**params)
        self.owner, self.field, self.label, self.integer = owner, name, label, integer
        self.low, self.high, self.reason = low, high, reason
        self.input = pn.widgets.TextInput(label=self._title(), value=self._format(getattr(owner, name)),
                                          width=width, css_classes=[f"field-{name}"])
        self.note = pn.pane.Alert("", alert_type="warning", visible=False, width=width, margin=(0, 10, 5, 10),
                                  renderer_options=SAFE_MARKDOWN,
                                  css_classes=["field-message", f"field-message-{name}"])
        self.input.param.watch(self._typed, "value")
        owner.param.watch(self._owner_changed, name)

    def _title(self) -> str:
        return f"{self.label} ({self._shown(self.low)} to {self._shown(self.high)})"

    def _format(self, value) -> str:
        """The text the box holds for ``value``."""
        if value is None:
            return ""
        if self.integer:
            return f"{int(value)}"
        return f"{value:g}"

    def _shown(self, value) -> str:
        """``value`` as a message states it (digits grouped)."""
        return f"{int(value):,}" if self.integer else f"{value:g}"

    def parse(self, text: str) -> float | int:
        """The number in ``text``; ValueError naming the entry and the range when it is not allowed."""
        allowed = f"allowed: {self._shown(self.low)} to {self._shown(self.high)} ({self.reason})"
        s = (text or "").strip().replace("_", "").replace(",", "")
        if s == "":
            raise ValueError(f"{self.label} is empty; {allowed}")
        if self.integer:
            if not re.fullmatch(r"[+-]?\d+", s):
                raise ValueError(f"{self.label} {quote(text)} is not a whole number; {allowed}")
            if len(s) > 24:  # int() of thousands of digits is slow, and refused beyond 4,300
                raise ValueError(f"{self.label} {quote(text)} is out of range; {allowed}")
            value: float | int = int(s)
        else:
            try:
                value = float(s)
            except ValueError:
                raise ValueError(f"{self.label} {quote(text)} is not a number; {allowed}") from None
            if not math.isfinite(value):
                raise ValueError(f"{self.label} {quote(text)} is not a finite number; {allowed}")
        if not self.low <= value <= self.high:
            raise ValueError(f"{self.label} {quote(text)} is out of range; {allowed}")
        return value

    def check(self) -> str | None:
        """The message for the box's current entry, or None when it is the effective value."""
        try:
            self.parse(self.input.value)
        except ValueError as exc:
            return str(exc)
        return None

    def set_range(self, low: float, high: float, reason: str) -> None:
        """New bounds (e.g. another preset): the current entry is checked again."""
        self.low, self.high, self.reason = low, high, reason
        self.input.label = self._title()
        self._typed()

    def _typed(self, *events) -> None:
        try:
            value = self.parse(self.input.value)
        except ValueError as exc:
            self.valid = False
            self.note.object = md_escape(str(exc))
            self.note.visible = True
            return
        self.valid = True
        self.note.object, self.note.visible = "", False
        if getattr(self.owner, self.field) != value:
            setattr(self.owner, self.field, value)

    def _owner_changed(self, event) -> None:
        text = self._format(event.new)
        if self.input.value != text:
            try:
                same = self.parse(self.input.value) == event.new
            except ValueError:
                same = False
            if not same:
                self.input.value = text

    def __panel__(self):
        return pn.Column(self.input, self.note, margin=0)
