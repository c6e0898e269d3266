"""Pure functions of the step: the learning-rate schedule grammar of the A1111 Train tab, and the
shapes (cosine, linear, warm-up) of --lr-scheduler on one rate.

"0.1:500, 0.01:1000, 0.001" means 0.1 while step < 500, then 0.01 while step < 1000, then 0.001 to
the end. A decimal end step is a fraction of max steps ("0.005:0.25" = the first 25%), as the guide
describes. A bare rate (or ":-1") runs to max steps and ends the list; when the schedule's last end
step comes before max steps, training stops there (A1111 behaviour).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import TIStudioError


@dataclass(frozen=True)
class LRSchedule:
    entries: tuple[tuple[float, int], ...]   # (rate, end step exclusive), end steps increasing

    def lr_at(self, step: int) -> float | None:
        """Rate for the optimizer step `step` (0-based), or None once the schedule has run out."""
        for rate, end in self.entries:
            if step < end:
                return rate
        return None

    @property
    def last_step(self) -> int:
        return self.entries[-1][1]


def parse_lr(text: str, max_steps: int) -> LRSchedule:
    """Every entry is checked (number, order, a run-to-the-end entry last), also those past
    max steps, so a schedule's mistake never hides behind a short --steps."""
    parsed: list[tuple[float, int | None, str]] = []   # (rate, end step or None = to the end, text)
    parts = [p.strip() for p in str(text).split(",")]
    for i, part in enumerate(parts):
        if not part:
            raise TIStudioError(f"--lr {text!r}: empty entry #{i + 1}; write e.g. '0.005:100, 0.001'")
        rate_s, _, end_s = part.partition(":")
        try:
            rate = float(rate_s)
        except ValueError:
            raise TIStudioError(f"--lr entry {part!r}: {rate_s!r} is not a number; write rate:end_step") from None
        if not rate > 0 or rate != rate or rate == float("inf"):
            raise TIStudioError(f"--lr entry {part!r}: the rate must be a positive number")
        end_s = end_s.strip()
        if not end_s or end_s == "-1":
            if i != len(parts) - 1:
                raise TIStudioError(f"--lr entry {part!r} runs to the end, so it must be the last entry")
            parsed.append((rate, None, part))
            continue
        try:
            end_f = float(end_s)
        except ValueError:
            raise TIStudioError(f"--lr entry {part!r}: {end_s!r} is not a step number") from None
        # An end step with a decimal point is a fraction of max steps.
        end = round(end_f * max_steps) if "." in end_s or "e" in end_s.lower() else int(end_f)
        previous = next((e for _, e, _ in reversed(parsed) if e is not None), 0)
        if end <= 0 or end <= previous:
            raise TIStudioError(f"--lr entry {part!r}: end steps must be positive and increasing "
                                f"(the entry before ends at {previous})" if previous else
                                f"--lr entry {part!r}: end steps must be positive")
        parsed.append((rate, end, part))
    entries: list[tuple[float, int]] = []
    for rate, end, _ in parsed:
        entries.append((rate, max_steps if end is None else min(end, max_steps)))
        if entries[-1][1] >= max_steps:
            break
    return LRSchedule(tuple(entries))


@dataclass(frozen=True)
class ShapedSchedule:
    """--lr-scheduler constant | cosine | cosine-restarts | linear on the single rate of --lr, and a
    linear warm-up (--warmup-steps) on any scheduler, the A1111 grammar included. Still a pure
    function of the step, so a resume continues the curve exactly.

    With w warm-up steps and p = (step − w)/(total − w) the progress after them:
      constant 1 · cosine ½(1 + cos πp) · cosine-restarts ½(1 + cos π·frac(p·cycles)) · linear 1 − p
    and during warm-up the factor is (step + 1)/(w + 1), so step 0 already trains a little."""

    base: LRSchedule
    shape: str = "step-grammar"
    warmup: int = 0
    total: int = 1
    cycles: int = 1

    @property
    def entries(self) -> tuple[tuple[float, int], ...]:
        return self.base.entries

    @property
    def last_step(self) -> int:
        return self.base.last_step

    def lr_at(self, step: int) -> float | None:
        rate = self.base.lr_at(step)
        if rate is None:
            return None
        return rate * self.factor(step)

    def factor(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / (self.warmup + 1)
        if self.shape in ("step-grammar", "constant"):
            return 1.0
        p = (step - self.warmup) / max(1, self.total - self.warmup)
        if self.shape == "linear":
            return 1.0 - p
        if self.shape == "cosine-restarts":
            p = (p * self.cycles) % 1.0
        return 0.5 * (1.0 + math.cos(math.pi * p))


def build_schedule(lr: str, steps: int, shape: str = "step-grammar", warmup: int = 0,
                   cycles: int = 1) -> LRSchedule | ShapedSchedule:
    base = parse_lr(lr, steps)
    if shape != "step-grammar" and len(base.entries) > 1:
        raise TIStudioError(f"--lr {lr!r} is a step schedule; --lr-scheduler {shape} shapes one rate: "
                            "give a single number, e.g. --lr 0.005 (or --lr-scheduler step-grammar)")
    if shape == "step-grammar" and not warmup:
        return base
    return ShapedSchedule(base, shape, warmup, steps, cycles)
