"""Warnings before the first step, for settings that train without error but waste the run: a
learning rate that moves the vectors further per step than the vocabulary's own scale, and a name
the model already knows or the captions already say."""
from __future__ import annotations

import math

from ..data.captions import name_in_text
from ..embedding.usage import vocabulary_warning, vocabulary_word
from ..schedules import LRSchedule

# Adam moves every coordinate by about lr per step, so a vector by about lr * sqrt(width). Above
# this multiple of the vocabulary's median token norm, a single step outweighs any real word (the
# default 0.005 is ~0.4x on SD1.5, the guide's 0.05 warm-up ~3.6x; --lr 1e9 is ~7e10x).
LR_WARN_RATIO = 5.0


def lr_step_ratio(rate: float, width: int, median: float) -> float:
    return rate * math.sqrt(width) / median


def lr_warning(schedule: LRSchedule, c, medians: tuple[float, ...]) -> str | None:
    """`medians`: the vocabulary median norms per text encoder (health.vocabulary_medians)."""
    peak = max(rate for rate, _ in schedule.entries)
    ratio = max(lr_step_ratio(peak, w, m) for w, m in zip(c.widths, medians))
    if ratio <= LR_WARN_RATIO:
        return None
    return (f"--lr {peak:g}: one step can move a vector by about {ratio:,.1f}x the vocabulary's median token "
            f"norm (warned above {LR_WARN_RATIO:g}x); the vectors will leave the range of real words. "
            "Use 0.005 (A1111's default) or a schedule such as '0.05:200, 0.005'")


def name_warnings(c, name: str, captions: list[str]) -> list[str]:
    out = [vocabulary_warning(name)] if vocabulary_word(c.tokenizer, name) else []
    named = [text for text in captions if name_in_text(name, text)]
    if named:
        out.append(f"{len(named)} of {len(captions)} captions contain the embedding name {name!r} (e.g. "
                   f"{named[0][:60]!r}); the template adds [name] already, so remove it from the captions "
                   "or pick another name")
    return out


def start_warnings(c, medians: tuple[float, ...], name: str, captions: list[str],
                   schedule: LRSchedule) -> list[str]:
    return [w for w in (lr_warning(schedule, c, medians), *name_warnings(c, name, captions)) if w]
