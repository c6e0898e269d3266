"""Numerical guards for the training loop (documented in RELIABILITY.md).

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

import copy
import math

import torch

from ..events import Message

MAX_BAD = 3        # non-finite steps in a row before rolling back
LR_FACTOR = 0.5    # learning-rate multiplier applied at each rollback


def finite(vectors) -> bool:
    return all(bool(torch.isfinite(v).all()) for v in vectors)


class NumericGuard:
    def __init__(self, max_bad: int = MAX_BAD, lr_factor: float = LR_FACTOR):
        self.max_bad = max_bad
        self.lr_factor = lr_factor
        self.lr_scale = 1.0     # multiplies the schedule's learning rate
        self.bad_in_row = 0
        self.skipped = 0        # steps skipped in this run (including before a resume)
        self.rollbacks = 0
        self._good: dict | None = None

    # -- the loop's calls --------------------------------------------------------------------------

    def start(self, s) -> None:
        """At the loop's start: the run's initial state is the good one, unless a resume restored it."""
        if self._good is None:
            self.remember(s)

    def remember(self, s) -> None:
        """Keep an in-memory copy of the current (good) state: at the start and at each save point."""
        self._good = {
            "vectors": {e.name: [p.detach().clone() for p in e.params] for e in s.objective.embeddings},
            "optimizer": copy.deepcopy(s.optimizer.state_dict()),
            "ema": copy.deepcopy(s.ema.state_dict()) if s.ema is not None else None,
            "scaler": copy.deepcopy(s.scaler.state_dict()) if s.scaler is not None else None,
        }

    def admit(self, s, step: int, loss: float) -> bool:
        """Call after backward (and unscale): True to take the optimizer step `step` (1-based), False
        when it must be skipped. Gradients of a skipped step are cleared."""
        loss_ok = math.isfinite(loss)
        grads_ok = loss_ok and all(p.grad is None or bool(torch.isfinite(p.grad).all())
                                   for e in s.objective.embeddings for p in e.params)
        if grads_ok or (loss_ok and s.scaler is not None):
            self.bad_in_row = 0
            return True
        s.optimizer.zero_grad(set_to_none=True)
        if s.scaler is not None:
            s.scaler.update()  # lower the scale, as a skipped scaler step would
        self.bad_in_row += 1
        self.skipped += 1
        what = f"loss {loss}" if not loss_ok else "gradient"
        s.callback(Message("warning", f"step {step}: non-finite {what}; step skipped "
                                      f"({self.bad_in_row} in a row, {self.skipped} in all)"))
        if self.bad_in_row >= self.max_bad:
            self.rollback(s, step, f"{self.bad_in_row} non-finite steps in a row")
        return False

    def check_vectors(self, s, step: int) -> None:
        """Call after the optimizer step: a step that made a vector non-finite is undone."""
        if not all(finite(e.params) for e in s.objective.embeddings):
            self.rollback(s, step, "the vectors became non-finite")

    def rollback(self, s, step: int, why: str) -> None:
        good = self._good
        if good is None:
            raise RuntimeError("NumericGuard.remember was never called")  # a loop wiring bug
        with torch.no_grad():
            for e in s.objective.embeddings:
                for p, v in zip(e.params, good["vectors"][e.name]):
                    p.copy_(v)
        s.optimizer.load_state_dict(copy.deepcopy(good["optimizer"]))
        if s.ema is not None and good["ema"] is not None:
            s.ema.load_state_dict(copy.deepcopy(good["ema"]))
        if s.scaler is not None and good["scaler"]:
            s.scaler.load_state_dict(copy.deepcopy(good["scaler"]))
        s.optimizer.zero_grad(set_to_none=True)
        self.lr_scale *= self.lr_factor
        self.rollbacks += 1
        self.bad_in_row = 0
        s.callback(Message("warning", f"step {step}: {why}; rolled back to the last good state and "
                                      f"lowered the learning rate to x{self.lr_scale:g}"))

    # -- training state ----------------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {"lr_scale": self.lr_scale, "bad_in_row": self.bad_in_row, "skipped": self.skipped,
                "rollbacks": self.rollbacks, "good": self._good}

    def load_state_dict(self, state: dict) -> None:
        """A state saved before guards existed has none: the defaults are right for it."""
        self.lr_scale = float(state.get("lr_scale", 1.0))
        self.bad_in_row = int(state.get("bad_in_row", 0))
        self.skipped = int(state.get("skipped", 0))
        self.rollbacks = int(state.get("rollbacks", 0))
        self._good = state.get("good")  # the rollback target travels with the state, for exactness
