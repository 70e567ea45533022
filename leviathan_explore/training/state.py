"""``TrainState``: where a run is. The part of a checkpoint that changes every step.

The trainer advances it once per optimizer step; the ``Checkpointer`` saves
``state_dict()`` into a checkpoint's ``state.json`` and restores it with
``load_state_dict``; the summary is written from it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrainState:
    step: int = 0                       # optimizer steps taken
    data_position: int = 0              # training samples consumed: the data order continues from here
    tokens: int = 0                     # training tokens seen
    train_time_s: float = 0.0           # seconds inside optimizer steps, over every session of the run
    prior_wall_time_s: float = 0.0      # wall time of the run's earlier sessions (a resumed run)
    last_eval: dict | None = None       # the latest ``eval`` record
    last_checkpoint: str | None = None  # the name of the newest checkpoint written or resumed from
    resumed_from: int | None = None     # the step this session resumed from
    session_start: float = field(default_factory=time.perf_counter, compare=False, repr=False)

    @property
    def wall_time_s(self) -> float:
        """Wall time of the run so far, earlier sessions included."""
        return self.prior_wall_time_s + time.perf_counter() - self.session_start

    def advance(self, samples: int, tokens: int, seconds: float) -> None:
        """One optimizer step that read ``samples`` sequences (``tokens`` tokens) in ``seconds``."""
        self.step += 1
        self.data_position += samples
        self.tokens += tokens
        self.train_time_s += seconds

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint records (the keys of ``state.json``)."""
        return {"step": self.step, "data_position": self.data_position, "tokens_seen": self.tokens,
                "wall_time_s": self.wall_time_s, "train_time_s": self.train_time_s, "last_eval": self.last_eval}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint's ``state.json`` (``state_dict()`` plus what else it holds)."""
        self.step, self.data_position = int(state["step"]), int(state["data_position"])
        self.tokens = int(state.get("tokens_seen", 0))
        self.prior_wall_time_s = state.get("wall_time_s", 0.0)
        self.train_time_s = state.get("train_time_s", 0.0)
        self.last_eval = state.get("last_eval")
