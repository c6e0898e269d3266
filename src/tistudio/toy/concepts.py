"""Concept specs and the held-out concepts of the toy world.

A held-out concept is a colour-shape pairing the toy model has seen drawn but never named. Its
images appear in base training only as often as any other colour of that shape appears with the
colour word dropped ("a photo of a star"), and always captioned that way. So the model can draw a
teal star, the words "teal star" together never reached it, and the init word alone ("star") gives
a teal star only about one time in len(COLOURS): the baseline a learned embedding must beat.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import TIStudioError
from .scenes import BACKGROUNDS, COLOURS, FRAMES, SHAPES, Scene, random_scene

HELD_OUT: tuple[tuple[str, str], ...] = (
    ("teal", "star"), ("pink", "triangle"), ("orange", "circle"), ("purple", "square"))

COLOUR_DROPOUT = 0.15     # share of captions that name the shape but not its colour
EMPTY_CAPTION = 0.10      # share of empty captions, so classifier-free guidance has an unconditional
BACKGROUND_NAMED = 0.30   # share of captions that also name the background


@dataclass(frozen=True)
class Concept:
    """What a concept spec names: a colour and a shape, optionally a background."""

    colour: str
    shape: str
    background: str | None = None

    @property
    def spec(self) -> str:
        base = f"{self.colour} {self.shape}"
        return f"{base} on {self.background}" if self.background else base

    @property
    def held_out(self) -> bool:
        return (self.colour, self.shape) in HELD_OUT

    @property
    def init_word(self) -> str:
        """The word an embedding of this concept starts from: the part the model knows by name."""
        return self.shape

    def scene(self, rng: np.random.Generator) -> Scene:
        return random_scene(rng, shape=self.shape, colour=self.colour, background=self.background)


def parse_concept(spec: str) -> Concept:
    """Parse "COLOUR SHAPE [on BACKGROUND]", e.g. "teal star" or "pink triangle on white"."""
    words = spec.lower().replace(",", " ").split()
    background = None
    if "on" in words:
        at = words.index("on")
        rest = [w for w in words[at + 1:] if w not in ("a", "background")]
        if len(rest) != 1 or rest[0] not in BACKGROUNDS:
            raise TIStudioError(f"--concept {spec!r}: background must be one of "
                                f"{', '.join(BACKGROUNDS)} (e.g. 'teal star on white')")
        background, words = rest[0], words[:at]
    colours = [w for w in words if w in COLOURS]
    shapes = [w for w in words if w in SHAPES]
    unknown = [w for w in words if w not in COLOURS and w not in SHAPES]
    if unknown or len(colours) != 1 or len(shapes) != 1:
        raise TIStudioError(
            f"--concept {spec!r} must be 'COLOUR SHAPE' with COLOUR one of {', '.join(COLOURS)} "
            f"and SHAPE one of {', '.join(SHAPES)} (e.g. 'teal star')")
    return Concept(colours[0], shapes[0], background)


def held_out_concepts() -> list[Concept]:
    return [Concept(c, s) for c, s in HELD_OUT]


def base_training_scene(rng: np.random.Generator) -> Scene:
    """A scene of the base model's training stream. Held-out pairings are accepted only at the
    colour-dropout rate, so among images captioned with a bare shape word every colour is equally
    common."""
    while True:
        scene = random_scene(rng)
        if (scene.colour, scene.shape) not in HELD_OUT or rng.random() < COLOUR_DROPOUT:
            return scene


def base_training_caption(scene: Scene, rng: np.random.Generator) -> str:
    """A caption for `scene` as the base model sees it; never names a held-out pairing."""
    if rng.random() < EMPTY_CAPTION:
        return ""
    frame = FRAMES[int(rng.integers(len(FRAMES)))]
    held = (scene.colour, scene.shape) in HELD_OUT
    with_colour = not held and rng.random() >= COLOUR_DROPOUT
    return scene.caption(frame, with_colour, with_background=rng.random() < BACKGROUND_NAMED)
