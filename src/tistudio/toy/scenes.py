"""Procedural, seeded scenes for the toy world: one flat-coloured shape on a plain background.

Everything the toy model, the classifier and the fidelity benchmark agree on lives here: the
palette, the shapes, how a scene is drawn and how it is captioned. Shapes are drawn unrotated at 4x
resolution and box-filtered down, so edges are anti-aliased the same way at any output size.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

# Colours are far apart in RGB (closest pair, orange/yellow, ~76 apart) so that a slightly-off
# model colour still has one clear nearest name. The model is trained on this palette and the
# classifier names colours by it: the shipped model's toy_training.json records the palette it was
# trained with, and a test holds the two equal (a model trained on another palette must ship with
# this constant changed). A wider palette was tried for a v2 model: docs/toy.md "Toy model v2".
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40),
    "orange": (240, 140, 20),
    "yellow": (235, 215, 30),
    "green": (40, 170, 60),
    "teal": (20, 165, 165),
    "blue": (40, 80, 215),
    "purple": (140, 60, 190),
    "pink": (240, 120, 180),
}
SHAPES = ("circle", "square", "triangle", "star")
BACKGROUNDS: dict[str, tuple[int, int, int]] = {"black": (15, 15, 18), "white": (240, 240, 236)}

# Radius and centre jitter as fractions of the image side: big enough that a star's points survive
# a factor-4 VAE at 32 px.
RADIUS_RANGE = (0.25, 0.33)
JITTER = 0.09
SUPERSAMPLE = 4

# Caption frames: A1111's subject-template words, so prompts built from those templates are made of
# words the toy text encoder has learned to read past.
FRAMES = (
    "{}", "a {}", "a photo of a {}", "a rendering of a {}", "a cropped photo of the {}",
    "the photo of a {}", "a photo of a clean {}", "a photo of a dirty {}", "a dark photo of the {}",
    "a photo of my {}", "a photo of the cool {}", "a close-up photo of a {}", "a bright photo of the {}",
    "a photo of the {}", "a good photo of the {}", "a photo of one {}", "a rendition of the {}",
    "a photo of a nice {}", "a photo of the small {}", "a photo of the weird {}",
    "a photo of the large {}", "a picture of a {}", "an image of a {}", "a drawing of the {}",
)


@dataclass(frozen=True)
class Scene:
    shape: str
    colour: str
    background: str
    cx: float        # centre and radius as fractions of the image side
    cy: float
    radius: float

    def subject(self, with_colour: bool = True) -> str:
        return f"{self.colour} {self.shape}" if with_colour else self.shape

    def caption(self, frame: str = "a photo of a {}", with_colour: bool = True,
                with_background: bool = False) -> str:
        text = frame.format(self.subject(with_colour))
        return f"{text} on a {self.background} background" if with_background else text


def random_scene(rng: np.random.Generator, shape: str | None = None, colour: str | None = None,
                 background: str | None = None) -> Scene:
    """A scene with the given attributes and random placement; unspecified attributes are random."""
    radius = float(rng.uniform(*RADIUS_RANGE))
    return Scene(
        shape=shape or str(rng.choice(SHAPES)),
        colour=colour or str(rng.choice(list(COLOURS))),
        background=background or str(rng.choice(list(BACKGROUNDS))),
        cx=0.5 + float(rng.uniform(-JITTER, JITTER)),
        cy=0.5 + float(rng.uniform(-JITTER, JITTER)),
        radius=radius,
    )


def shape_polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]] | None:
    """Vertices in pixels for polygon shapes; None for the circle. Sizes are chosen so that all four
    shapes cover a similar extent for the same radius."""
    if shape == "square":
        h = r * 0.86
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if shape == "triangle":
        R = r * 1.12   # circumradius of an upward equilateral triangle centred on its centroid
        return [(cx + R * math.cos(math.radians(a)), cy - R * math.sin(math.radians(a)))
                for a in (90, 210, 330)]
    if shape == "star":
        outer, inner = r * 1.15, r * 1.15 * 0.45
        pts = []
        for k in range(10):
            rad = outer if k % 2 == 0 else inner
            a = math.radians(90 + 36 * k)
            pts.append((cx + rad * math.cos(a), cy - rad * math.sin(a)))
        return pts
    if shape == "circle":
        return None
    raise ValueError(f"unknown shape {shape!r}")


def shape_mask(shape: str, cx: float, cy: float, r: float, size: int) -> np.ndarray:
    """Anti-aliased coverage in [0, 1], shape [size, size], centre/radius in pixels."""
    big = size * SUPERSAMPLE
    img = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(img)
    s = SUPERSAMPLE
    poly = shape_polygon(shape, cx * s, cy * s, r * s)
    if poly is None:
        draw.ellipse((s * (cx - r), s * (cy - r), s * (cx + r), s * (cy + r)), fill=255)
    else:
        draw.polygon(poly, fill=255)
    small = img.resize((size, size), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32) / 255.0


def render(scene: Scene, size: int = 32) -> Image.Image:
    """Draw a scene as an RGB image of side `size`."""
    cover = shape_mask(scene.shape, scene.cx * size, scene.cy * size, scene.radius * size, size)
    fg = np.array(COLOURS[scene.colour], dtype=np.float32)
    bg = np.array(BACKGROUNDS[scene.background], dtype=np.float32)
    pixels = bg + cover[..., None] * (fg - bg)
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "RGB")
