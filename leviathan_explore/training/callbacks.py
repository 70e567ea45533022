"""What a caller of ``train`` can hook into: every step, every evaluation, and a stop.

A callback implements any of the three methods of ``TrainCallback``: subclass
``Callback`` (no-op defaults) and override what you need, or pass any object that
has some of them (``as_callback`` fills in the rest), e.g.::

    class StopAfter(Callback):
        def __init__(self, n):
            self.n, self.seen = n, 0

        def on_step(self, metrics):
            self.seen = metrics["step"]

        def should_stop(self):
            return self.seen >= self.n
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class TrainCallback(Protocol):
    def on_step(self, metrics: dict) -> None:
        """After every optimizer step: the dict of a ``train`` line of ``metrics.jsonl``."""

    def on_eval(self, metrics: dict) -> None:
        """After every evaluation: the dict of an ``eval`` line."""

    def should_stop(self) -> bool:
        """Polled before each step (and between micro-batches): True stops cleanly, with a
        checkpoint and a ``summary.json`` that says ``"stopped_early": true``."""


class Callback:
    """A ``TrainCallback`` that does nothing; subclasses override what they need."""

    def on_step(self, metrics: dict) -> None:
        pass

    def on_eval(self, metrics: dict) -> None:
        pass

    def should_stop(self) -> bool:
        return False


class _Partial(Callback):
    """An object with only some of the methods, the others no-ops."""

    def __init__(self, obj: Any):
        self.obj = obj
        for name in ("on_step", "on_eval", "should_stop"):
            method = getattr(obj, name, None)
            if method is not None:
                setattr(self, name, method)


def as_callback(obj: Any) -> TrainCallback:
    """``obj`` as a full ``TrainCallback``: itself if it has all three methods, else wrapped."""
    return obj if isinstance(obj, TrainCallback) else _Partial(obj)


__all__ = ["TrainCallback", "Callback", "as_callback"]
