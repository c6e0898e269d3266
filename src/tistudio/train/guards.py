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

None of these checks makes the CPU wait for the device on its own. The gradients' verdict is a
device-side flag read together with the step's losses, in the one device-to-host copy the loop
makes anyway to log the loss (`read_step`). The vectors' verdict after an optimizer step is read
with the next step's copy, or before anything judges or saves the vectors (a preview, save or
evaluation step, and the end of the run: TrainState.settle). Found there, it rolls back as before;
a step already computed on the non-finite vectors is skipped with it. Other per-step checks that
need a device value (the vector-health watch, health.py) hand it to the same copy (TrainState.defer).

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


def all_finite(tensors) -> torch.Tensor | None:
    """A 0-dim bool tensor on the tensors' device, True when every value of every tensor is
    finite, computed without waiting for the device; None for no tensors."""
    flags = [torch.isfinite(t).all() for t in tensors if t is not None]
    return torch.stack(flags).all() if flags else None


def read_step(losses, flags, later=()) -> tuple[float, list[bool], list[list[float]]]:
    """The step's loss, the device flags (all_finite's) and the `later` 1-D tensors (values deferred
    to this copy: TrainState.defer) in one device-to-host copy. The loss is its micro-batches'
    losses (0-dim tensors) added in order on the host, exactly as adding each float(loss) would be
    (float32 holds fp16, bf16 and fp32 values exactly); a None flag reads True; each later tensor
    comes back as its float32 values, as float() of each would read them. No losses: 0.0."""
    given = [f for f in flags if f is not None]
    parts = [*losses, *given, *later]
    if not parts:
        return 0.0, [True] * len(flags), []
    dev = parts[0].device
    values = torch.cat([x.float().reshape(1) for x in losses]
                       + [f.to(device=dev, dtype=torch.float32).reshape(1) for f in given]
                       + [t.to(device=dev, dtype=torch.float32).reshape(-1) for t in later]).tolist()
    total = 0.0
    for value in values[:len(losses)]:
        total += value
    read = iter(values[len(losses):len(losses) + len(given)])
    rest, out = values[len(losses) + len(given):], []
    for t in later:
        out.append(rest[:t.numel()])
        rest = rest[t.numel():]
    return total, [True if f is None else bool(next(read)) for f in flags], out


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

    def admit(self, step: int, loss: float, grads_finite: bool, scaled: bool, say: Callback) -> bool:
        """After backward (and unscale): True to take the optimizer step `step` (1-based), False when
        it must be skipped (counted and reported). `loss` and `grads_finite` come from read_step
        (the gradients' verdict is taken before any unscaling). With fp16 loss scaling (`scaled`)
        overflowing gradients are the scaler's business: only the loss decides."""
        loss_ok = math.isfinite(loss)
        grads_ok = loss_ok and grads_finite
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
