"""Where embeddings go in a prompt: A1111's rules on tokenizer tokens.

A trigger is matched on tokens (so "cat" never matches inside "concatenate"), longest trigger first;
it occupies one position per vector; a chunk holds 75 positions between BOS and EOS, and an embedding
that would straddle a chunk boundary moves whole to the next chunk. The vectors themselves are
written into the token-embedding output by models/conditioning.py; here we only plan positions.
"""
from __future__ import annotations

from dataclasses import dataclass, field

CHUNK = 75        # positions between BOS and EOS (CLIP's context is 77)
FILLER_ID = 0     # placeholder id at embedding positions; its row is overwritten before use


@dataclass
class Chunk:
    tokens: list[int] = field(default_factory=list)          # ≤ 75 ids, placeholders included
    fixes: list[tuple[int, str]] = field(default_factory=list)  # (index into tokens, trigger name)


class TriggerMatcher:
    """Splits prompts into chunks with embedding positions. `triggers` maps name -> vector count."""

    def __init__(self, tokenizer, triggers: dict[str, int]):
        self.tokenizer = tokenizer
        self.triggers = dict(triggers)
        by_first: dict[int, list[tuple[tuple[int, ...], str]]] = {}
        for name in triggers:
            ids = tuple(self._ids(name))
            if ids:
                by_first.setdefault(ids[0], []).append((ids, name))
        for candidates in by_first.values():
            candidates.sort(key=lambda c: -len(c[0]))  # longest match first
        self._by_first = by_first

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False, truncation=False, verbose=False).input_ids

    def parse(self, prompt: str) -> list[int | str]:
        """Token ids, with a trigger name standing in for each matched embedding."""
        ids, out, i = self._ids(prompt), [], 0
        while i < len(ids):
            for seq, name in self._by_first.get(ids[i], ()):
                if tuple(ids[i:i + len(seq)]) == seq:
                    out.append(name)
                    i += len(seq)
                    break
            else:
                out.append(ids[i])
                i += 1
        return out

    def chunks(self, prompt: str) -> list[Chunk]:
        chunks = [Chunk()]
        for item in self.parse(prompt):
            width = self.triggers[item] if isinstance(item, str) else 1
            if len(chunks[-1].tokens) + width > CHUNK:
                chunks.append(Chunk())
            current = chunks[-1]
            if isinstance(item, str):
                current.fixes.append((len(current.tokens), item))
                current.tokens.extend([FILLER_ID] * width)
            else:
                current.tokens.append(item)
        return chunks
