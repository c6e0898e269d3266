"""Pure functions of the step: the learning-rate schedule grammar of the A1111 Train tab.

"0.1:500, 0.01:1000, 0.001" means 0.1 while step < 500, then 0.01 while step < 1000, then 0.001 to
the end. A decimal end step is a fraction of max steps ("0.005:0.25" = the first 25%), as the guide
describes. A bare rate (or ":-1") runs to max steps and ends the list; when the schedule's last end
step comes before max steps, training stops there (A1111 behaviour).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import TIStudioError


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
