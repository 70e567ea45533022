"""Training progress that reaches any output: a live bar on a terminal, plain lines elsewhere.

tqdm redraws one line with carriage returns, which a log file, CI or a notebook's
captured stderr shows either not at all or as one line at the end. When the stream
is not a terminal, ``TrainingProgress`` prints one self-contained line every
``interval_s`` seconds (and at the last step) instead::

    [train lev] step 120/300 (40%)  loss 4.812  21,340 tokens/s  elapsed 0:00:45  ETA 0:01:07
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class TrainingProgress:
    """Step, loss, tokens/s and ETA of one run, as a tqdm bar (terminal) or timed lines (anything else)."""

    def __init__(self, total: int, initial: int, desc: str, *, enabled: bool = True,
                 stream: TextIO | None = None, interval_s: float = 5.0, force_lines: bool | None = None):
        self.total, self.step, self.desc = total, initial, desc
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.interval_s = interval_s
        self.start_step, self.started = initial, time.perf_counter()
        self.last_line = self.started
        tty = getattr(self.stream, "isatty", lambda: False)()
        self.lines = enabled and (not tty if force_lines is None else force_lines)
        self.bar = None
        if enabled and not self.lines:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, desc=desc,
                            file=self.stream)

    def eta_s(self) -> float | None:
        done = self.step - self.start_step
        if done <= 0:
            return None
        return (time.perf_counter() - self.started) / done * (self.total - self.step)

    def line(self, loss: float, tokens_per_s: float) -> str:
        eta = self.eta_s()
        return (f"[train {self.desc}] step {self.step}/{self.total} ({100 * self.step / max(self.total, 1):.0f}%)  "
                f"loss {loss:.3f}  {tokens_per_s:,.0f} tokens/s  "
                f"elapsed {format_duration(time.perf_counter() - self.started)}  "
                f"ETA {'-' if eta is None else format_duration(eta)}")

    def update(self, step: int, loss: float, tokens_per_s: float) -> None:
        self.step = step
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            self.bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{tokens_per_s:.0f}", refresh=False)
            return
        now = time.perf_counter()
        if now - self.last_line >= self.interval_s or step >= self.total:
            self.last_line = now
            print(self.line(loss, tokens_per_s), file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
