"""Which embeddings a prompt uses, and the words that look meant for one but match none: an
angle-bracketed `<word>` (the diffusers and ComfyUI habit) and near-misses of a known trigger (a
typo'd trigger would otherwise be encoded as plain words, silently)."""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from ..models.triggers import TriggerMatcher

_BRACKETED = re.compile(r"<[^<>\s]+>")
_WORD = re.compile(r"[\w.\-]+")
NEAR_MISS = 0.8        # difflib ratio from which a word counts as a typo of a trigger
MIN_NEAR_MISS_LEN = 4  # shorter words are too often ordinary words


@dataclass(frozen=True)
class PromptUsage:
    used: tuple[str, ...]                          # triggers found, in first-use order
    unknown: tuple[tuple[str, str | None], ...]    # (word, closest trigger or None)

    def lines(self) -> list[str]:
        out = [f"embeddings used: {', '.join(self.used) if self.used else 'none'}"]
        for word, near in self.unknown:
            hint = f"; did you mean {near!r}?" if near else "; no embedding has that name"
            out.append(f"warning: {word!r} in the prompt matches no embedding{hint}")
        return out


def prompt_usage(tokenizer, triggers: dict[str, int], *prompts: str) -> PromptUsage:
    """`triggers`: name -> vector count, as the prompt encoder sees them."""
    matcher = TriggerMatcher(tokenizer, triggers)
    lowered = {t.lower(): t for t in triggers}
    used: dict[str, None] = {}
    unknown: dict[str, str | None] = {}
    for prompt in prompts:
        for item in matcher.parse(prompt):
            if isinstance(item, str):
                used.setdefault(item)
        for word in _BRACKETED.findall(prompt):
            if not any(isinstance(item, str) for item in matcher.parse(word)):
                unknown.setdefault(word, _closest(word.strip("<>"), lowered))
        for word in _WORD.findall(prompt):
            if len(word) >= MIN_NEAR_MISS_LEN and word.lower() not in lowered \
                    and (near := _closest(word, lowered)) and near not in used:
                unknown.setdefault(word, near)
    return PromptUsage(tuple(used), tuple(unknown.items()))


def _closest(word: str, lowered: dict[str, str]) -> str | None:
    """The trigger `word` is most likely a typo of: a swapped, missing or extra letter or two, never
    a shorter word inside it ("style" is not a typo of "mystyle")."""
    word = word.lower()
    close = [t for t in lowered if abs(len(t) - len(word)) <= 1]
    match = difflib.get_close_matches(word, close, n=1, cutoff=NEAR_MISS)
    return lowered[match[0]] if match else None


def vocabulary_word(tokenizer, name: str) -> bool:
    """Whether `name` is one token the model already knows ("star"): as a trigger it then replaces
    that word in every prompt and caption, and training overwrites what the word meant there."""
    return f"{name.lower()}</w>" in tokenizer.get_vocab()


def vocabulary_warning(name: str) -> str:
    return (f"embedding name {name!r} is a word the model already knows: every {name!r} in a prompt or "
            f"caption will mean this embedding instead; a made-up word (e.g. {name + 'tok'!r}) avoids that")
