"""Training prompts: a template line with `[filewords]` -> the caption's tags and `[name]` -> the
embedding name (README, "Training").

Tags are the caption split on ",", stripped; empty tags ("a,,b", a trailing comma) are dropped first.
Tag dropout keeps each tag independently when `rng.random() >= p`, so p = 1 drops every tag: that is
a legitimate "train without captions" setting, and we allow it rather than secretly keeping one tag.
When no tag survives, `[filewords]` is removed together with one adjacent ", " so the prompt does
not end in a dangling comma. All randomness comes from the `rng` passed in; the training sampler
gives every sample of the stream its own (rng.py), so a prompt depends only on (seed, position).

Caption extras (kohya's): `keep_tokens` N keeps the first N tags in place and never drops them while
the rest are shuffled and dropped; a prefix and suffix stand around the tags, never shuffled or
dropped; caption dropout empties the whole [filewords] (prefix and suffix too) for a sample, with
a coin of its own keyed by the sample's position, so it changes no other draw.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Sequence

from ..errors import TIStudioError
from ..rng import python_random

FILEWORDS = "[filewords]"
NAME = "[name]"
# An empty [filewords] takes one neighbouring comma with it: "a photo of [name], [filewords]".
_EMPTY_FILEWORDS = re.compile(r"\s*,\s*\[filewords\]|\[filewords\]\s*,\s*|\[filewords\]")


def process_tags(caption: str, rng: random.Random, shuffle_tags: bool = False,
                 tag_dropout: float = 0.0, keep_tokens: int = 0) -> str:
    """The `[filewords]` text for one sample: tags after dropout and shuffle (the first
    `keep_tokens` exempt from both), joined with ", "."""
    if not 0.0 <= tag_dropout <= 1.0:
        raise TIStudioError(f"--tag-dropout {tag_dropout} is out of range; use a value from 0 to 1")
    tags = [tag.strip() for tag in caption.split(",") if tag.strip()]
    kept, tags = tags[:keep_tokens], tags[keep_tokens:]
    if tag_dropout > 0:
        tags = [tag for tag in tags if rng.random() >= tag_dropout]
    if shuffle_tags:
        rng.shuffle(tags)
    return ", ".join(kept + tags)


def fill(line: str, name: str, filewords: str) -> str:
    """Substitute an already processed tag string and the name into a template line."""
    if not filewords:
        line = _EMPTY_FILEWORDS.sub("", line)
    # [filewords] first, as A1111 does: a caption may itself say "[name]" and mean the embedding.
    text = line.replace(FILEWORDS, filewords).replace(NAME, name)
    # CLIP's tokenizer collapses whitespace anyway; doing it here keeps logged prompts readable.
    return " ".join(text.split())


def render(line: str, name: str, caption: str, rng: random.Random, shuffle_tags: bool = False,
           tag_dropout: float = 0.0) -> str:
    return fill(line, name, process_tags(caption, rng, shuffle_tags, tag_dropout))


@dataclass(frozen=True)
class CaptionExtras:
    """TrainConfig's keep_tokens, caption_prefix, caption_suffix and caption_dropout (module docstring)."""

    keep_tokens: int = 0
    prefix: str = ""
    suffix: str = ""
    dropout: float = 0.0

    @classmethod
    def of(cls, cfg) -> "CaptionExtras":
        return cls(cfg.keep_tokens, cfg.caption_prefix, cfg.caption_suffix, cfg.caption_dropout)

    def dropped(self, seed: int, position: int) -> bool:
        """Whether the sample at stream `position` trains without its caption."""
        return self.dropout > 0 and python_random(seed, "caption-dropout", position).random() < self.dropout

    def around(self, tags: str) -> str:
        return ", ".join(part for part in (self.prefix.strip(), tags, self.suffix.strip()) if part)


@dataclass(frozen=True)
class Prompt:
    line_index: int  # which template line: DreamArtist pairs it with the same line of the plain template
    filewords: str   # the processed tags, so a paired prompt can reuse exactly the same ones
    text: str


class PromptSampler:
    """Draws a fresh template line for every sample of every step (A1111 defect 3: with shuffle and
    dropout off, each image kept one template line for the whole run). The sample at stream position
    p (data/batches.py: step * batch_size * grad_accum + its place in the step) draws from its own
    generator, so a prompt is the same whatever the batch size or accumulation, and a resumed run
    needs no saved state to continue with the same prompts."""

    def __init__(self, lines: Sequence[str], seed: int, shuffle_tags: bool = False, tag_dropout: float = 0.0,
                 extras: CaptionExtras = CaptionExtras()):
        if not lines:
            raise TIStudioError("the prompt template has no lines; add at least one line with [name]")
        self.lines = list(lines)
        self.seed = seed
        self.shuffle_tags = shuffle_tags
        self.tag_dropout = tag_dropout
        self.extras = extras

    def sample(self, name: str, caption: str, position: int, lines: Sequence[str] | None = None) -> Prompt:
        """`lines`: the sample's concept's own template (data/concepts.py), else the run's."""
        lines = lines or self.lines
        rng = python_random(self.seed, "prompt", position)
        index = rng.randrange(len(lines))
        filewords = process_tags(caption, rng, self.shuffle_tags, self.tag_dropout, self.extras.keep_tokens)
        filewords = "" if self.extras.dropped(self.seed, position) else self.extras.around(filewords)
        return Prompt(index, filewords, fill(lines[index], name, filewords))

    def batch(self, name: str | Sequence[str], captions: Sequence[str], first_position: int,
              lines: Sequence[Sequence[str] | None] | None = None) -> list[Prompt]:
        """The prompts of the samples at stream positions first_position, first_position + 1, ...;
        `name`: the one [name] of every sample, or each sample's (several embeddings); `lines`: each
        sample's template lines (None: the run's)."""
        names = [name] * len(captions) if isinstance(name, str) else list(name)
        lines = lines or [None] * len(captions)
        return [self.sample(own_name, caption, first_position + j, own)
                for j, (own_name, caption, own) in enumerate(zip(names, captions, lines))]
