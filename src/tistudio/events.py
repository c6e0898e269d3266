"""How the core talks to a UI: events handed to a callback, and a stop token the UI can set.
Standard library only, so any front end (CLI, web UI, tests) can use them."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable, Union


@dataclass(frozen=True)
class Progress:
    step: int
    max_steps: int
    loss: float
    lr: float
    epoch: int
    epoch_step: int
    seconds_per_step: float
    eta_seconds: float


@dataclass(frozen=True)
class Caching:
    """Latent caching before the first step: images (mirrors included) done of total."""
    done: int
    total: int
    seconds_per_image: float
    eta_seconds: float


@dataclass(frozen=True)
class Saved:
    step: int
    paths: tuple[str, ...]


@dataclass(frozen=True)
class Previewed:
    step: int
    path: str


@dataclass(frozen=True)
class Message:
    level: str    # info | warning
    text: str


@dataclass(frozen=True)
class Finished:
    step: int
    reason: str   # completed | schedule-ended | interrupted | any reason given to StopToken.stop
    outputs: tuple[str, ...]


Event = Union[Progress, Caching, Saved, Previewed, Message, Finished]
Callback = Callable[[Event], None]


class StopToken:
    """Set by a UI (or a signal handler) to end training cleanly after the current step."""

    def __init__(self):
        self._event = threading.Event()
        self.reason = "interrupted"

    def stop(self, reason: str = "interrupted") -> None:
        """`reason` ends up in Finished.reason (e.g. "early-stopped" from a validation hook)."""
        self.reason = reason
        self._event.set()

    @property
    def stopped(self) -> bool:
        return self._event.is_set()
