"""Crop jitter and colour jitter as cached variants (docs/buckets.md, "Augmentation").

Latents are encoded once, before training, so an augmentation that changed the pixels at every step
would need the VAE at every step. Instead each image gets `n` fixed variants, each a crop position
within the remainder its bucket (or the training size) leaves and a colour change, all drawn from
rng.py keyed by (seed, image, variant). Every variant is encoded into the cache like a mirrored copy
(exactly: a variant's latent is the VAE's encoding of that picture), and each sample of training
picks one variant from a draw keyed by its place in the sample stream, so the choice is a pure
function of (seed, step) and a resume sees the same variants. Without augmentation an image has a
single variant, the centred crop with its own colours: the cache is what it always was.
"""
from __future__ import annotations

from dataclasses import dataclass

from PIL import Image, ImageEnhance

from ..rng import python_random

@dataclass(frozen=True)
class Augment:
    """One variant: ImageOps.fit's centering (0..1 across the crop's slack on each axis) and colour
    factors (1 = unchanged; hue: a shift in turns, 0 = unchanged)."""

    centering: tuple[float, float] = (0.5, 0.5)
    brightness: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0
    hue: float = 0.0

    @property
    def key(self) -> str:
        """What tells this variant's cached latents apart ("" for the plain image: keys stay as before)."""
        if self == Augment():
            return ""
        return "aug:" + ",".join(f"{v:.6f}" for v in (*self.centering, self.brightness, self.contrast,
                                                       self.saturation, self.hue))

    def colour(self, img: Image.Image) -> Image.Image:
        """The RGB picture with this variant's colour change (brightness, contrast, saturation, hue)."""
        for enhance, factor in ((ImageEnhance.Brightness, self.brightness), (ImageEnhance.Contrast, self.contrast),
                                (ImageEnhance.Color, self.saturation)):
            if factor != 1.0:
                img = enhance(img).enhance(factor)
        if self.hue:
            h, s, v = img.convert("HSV").split()
            shift = int(round(self.hue * 256)) % 256
            h = h.point(lambda x: (x + shift) % 256)
            img = Image.merge("HSV", (h, s, v)).convert("RGB")
        return img


def variants(image_key: str, seed: int, n: int, random_crop: bool,
             jitter: tuple[float, float, float, float]) -> list[Augment]:
    """The `n` variants of one image, a pure function of (seed, image_key): only `random_crop` moves
    the crop, only non-zero jitter changes colours; one plain variant when neither is asked for."""
    if not random_crop and not any(jitter):
        return [Augment()]
    out = []
    for v in range(n):
        rng = python_random(seed, "augment", image_key, v)
        centering = (rng.random(), rng.random()) if random_crop else (0.5, 0.5)
        b, c, s, h = (1 + rng.uniform(-x, x) if i < 3 else rng.uniform(-x, x) for i, x in enumerate(jitter))
        out.append(Augment(centering, b, c, s, h))
    return out


def pick(seed: int, position: int, n: int) -> int:
    """Which of an image's `n` variants the sample at `position` of the sample stream trains on."""
    return python_random(seed, "variant", position).randrange(n) if n > 1 else 0
