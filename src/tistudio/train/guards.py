"""Numerical guards for the training loop (documented in RELIABILITY.md): plain decisions on a
step's loss and gradients; state.TrainState carries them out.

- A step whose loss or any gradient is not finite is skipped: no clipping, no optimizer step, the
  vectors and optimizer moments stay as they were. It is reported (a warning Message; loss.csv shows
  the non-finite loss) and the run goes on with the next step's data.
- After MAX_BAD such steps in a row, or as soon as an optimizer step leaves a vector non-finite, the
  vectors, optimizer, EMA and loss scaler roll back to the last good state (the one last written to
  state.pt, or the run's start) and the learning rate is multiplied by LR_FACTOR for the rest of the
  run (repeatable: each rollback halves it again). The step counter does not move back, so a
  data-caused NaN cannot loop forever.
- With fp16 loss scaling, overflowing gradients are the scaler's business (it skips the step and
  lowers its scale): they are not counted, unless the loss itself is not finite.
- A non-finite vector is never saved: `finite` is checked before every snapshot and final output.

The guard's counters, learning-rate factor and rollback target are part of the training state, so
a resumed run continues exactly as an uninterrupted one would.
"""
from __future__ import annotations

import math

import torch

from ..events import Callback, Message

MAX_BAD = 3        # non-finite steps in a row before rolling back
LR_FACTOR = 0.5    # learning-rate multiplier applied at each rollback


def finite(vectors) -> bool:
    return all(bool(torch.isfinite(v).all()) for v in vectors)


class NumericGuard:
    """The guard's counters, its learning-rate factor and the rollback target. It decides; the
    training state (state.TrainState) skips a step or puts the good state back as it says."""

    def __init__(self, max_bad: int = MAX_BAD, lr_factor: float = LR_FACTOR):
        self.max_bad = max_bad
        self.lr_factor = lr_factor
        self.lr_scale = 1.0     # multiplies the schedule's learning rate
        self.bad_in_row = 0
        self.skipped = 0        # steps skipped in this run (including before a resume)
        self.rollbacks = 0
        self.good: dict | None = None   # the state a rollback returns to (TrainState.remember)

    def remember(self, good: dict) -> None:
        """`good`: a copy of the current state (at the start and at each save point)."""
        self.good = good

    def admit(self, step: int, loss: float, params, scaled: bool, say: Callback) -> bool:
        """After backward (and unscale): True to take the optimizer step `step` (1-based), False when
        it must be skipped (counted and reported). With fp16 loss scaling (`scaled`) overflowing
        gradients are the scaler's business."""
        loss_ok = math.isfinite(loss)
        grads_ok = loss_ok and all(p.grad is None or bool(torch.isfinite(p.grad).all()) for p in params)
        if grads_ok or (loss_ok and scaled):
            self.bad_in_row = 0
            return True
        self.bad_in_row += 1
        self.skipped += 1
        what = f"loss {loss}" if not loss_ok else "gradient"
        say(Message("warning", f"step {step}: non-finite {what}; step skipped "
                               f"({self.bad_in_row} in a row, {self.skipped} in all)"))
        return False

    def rollback_due(self) -> str | None:
        """Why the good state must come back after a skipped step, or None."""
        return f"{self.bad_in_row} non-finite steps in a row" if self.bad_in_row >= self.max_bad else None

    def target(self) -> dict:
        if self.good is None:
            raise RuntimeError("NumericGuard.remember was never called")  # a loop wiring bug
        return self.good

    def rolled_back(self, step: int, why: str, say: Callback) -> None:
        """The good state is back: lower the learning rate from now on."""
        self.lr_scale *= self.lr_factor
        self.rollbacks += 1
        self.bad_in_row = 0
        say(Message("warning", f"step {step}: {why}; rolled back to the last good state and "
                               f"lowered the learning rate to x{self.lr_scale:g}"))

    # -- training state ----------------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {"lr_scale": self.lr_scale, "bad_in_row": self.bad_in_row, "skipped": self.skipped,
                "rollbacks": self.rollbacks, "good": self.good}

    def load_state_dict(self, state: dict) -> None:
        """A state saved before guards existed has none: the defaults are right for it."""
        self.lr_scale = float(state.get("lr_scale", 1.0))
        self.bad_in_row = int(state.get("bad_in_row", 0))
        self.skipped = int(state.get("skipped", 0))
        self.rollbacks = int(state.get("rollbacks", 0))
        self.good = state.get("good")  # the rollback target travels with the state, for exactness
