"""A rule-based classifier for toy-world images: which colour and which shape is shown.

Rules rather than a trained net, so its mistakes can be read: the background is the median border
colour; the object is the largest connected region that differs from it; its colour is the nearest
palette entry to the median of its core pixels; its shape is the template with the highest overlap
after both are scaled to their bounding boxes (shapes are never rotated, so this is scale and
position invariant and tolerant of the blur a small diffusion model produces).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

from .scenes import COLOURS, SHAPES, shape_mask

GRID = 24            # side of the bounding-box-normalised masks that are compared
MIN_CONTRAST = 60.0  # RGB distance below which nothing is considered drawn
MIN_PIXELS = 6


@dataclass(frozen=True)
class Prediction:
    colour: str | None       # None when no object was found
    shape: str | None
    shape_score: float = 0.0  # IoU with the best template, 0..1

    def matches(self, colour: str, shape: str) -> bool:
        return self.colour == colour and self.shape == shape


def _largest_region(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected True region of a small boolean image."""
    seen = np.zeros_like(mask)
    best: list[tuple[int, int]] = []
    h, w = mask.shape
    for y0, x0 in zip(*np.nonzero(mask)):
        if seen[y0, x0]:
            continue
        region, queue = [], deque([(y0, x0)])
        seen[y0, x0] = True
        while queue:
            y, x = queue.popleft()
            region.append((y, x))
            for ny, nx in ((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)):
                if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    queue.append((ny, nx))
        if len(region) > len(best):
            best = region
    out = np.zeros_like(mask)
    if best:
        ys, xs = zip(*best)
        out[list(ys), list(xs)] = True
    return out


def _normalised(cover: np.ndarray) -> np.ndarray:
    """Crop a coverage map to its bounding box (coverage >= 0.5) and resize it to GRID x GRID."""
    ys, xs = np.nonzero(cover >= 0.5)
    crop = cover[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    img = Image.fromarray((np.clip(crop, 0, 1) * 255).astype(np.uint8), "L")
    return np.asarray(img.resize((GRID, GRID), Image.Resampling.BILINEAR), dtype=np.float32) / 255.0


@lru_cache(maxsize=1)
def _templates() -> dict[str, np.ndarray]:
    size = 128
    return {s: _normalised(shape_mask(s, size / 2, size / 2, size * 0.3, size)) >= 0.5 for s in SHAPES}


def classify(image: Image.Image | np.ndarray) -> Prediction:
    """Name the colour and shape of the object in an RGB image (PIL or uint8 array [H, W, 3])."""
    px = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image, np.float32)
    border = np.concatenate([px[0], px[-1], px[:, 0], px[:, -1]])
    background = np.median(border, axis=0)
    diff = np.linalg.norm(px - background, axis=-1)
    peak = float(np.percentile(diff, 99))
    if peak < MIN_CONTRAST:
        return Prediction(None, None)
    region = _largest_region(diff > 0.5 * peak)
    if region.sum() < MIN_PIXELS:
        return Prediction(None, None)
    core = region & (diff > 0.75 * peak)
    colour_px = np.median(px[core if core.any() else region], axis=0)
    names = list(COLOURS)
    dists = np.linalg.norm(np.array([COLOURS[n] for n in names], np.float32) - colour_px, axis=1)
    colour = names[int(np.argmin(dists))]
    # Coverage: 0 at the background, 1 at the object's own colour, limited to the object region.
    cover = np.where(region, np.clip(diff / max(np.linalg.norm(colour_px - background), 1.0), 0, 1), 0)
    shape_bin = _normalised(cover) >= 0.5
    scores = {s: float((shape_bin & t).sum() / max((shape_bin | t).sum(), 1))
              for s, t in _templates().items()}
    shape = max(scores, key=scores.get)
    return Prediction(colour, shape, scores[shape])


def accuracy(images, truths: list[tuple[str, str]]) -> dict[str, float]:
    """Colour, shape and joint accuracy of `classify` over images with known (colour, shape)."""
    preds = [classify(im) for im in images]
    n = max(len(preds), 1)
    return {
        "colour": sum(p.colour == c for p, (c, _) in zip(preds, truths)) / n,
        "shape": sum(p.shape == s for p, (_, s) in zip(preds, truths)) / n,
        "both": sum(p.matches(c, s) for p, (c, s) in zip(preds, truths)) / n,
    }


def fraction_of(images, colour: str, shape: str) -> float:
    """Share of images the classifier reads as this colour and shape: the fidelity benchmark's score."""
    images = list(images)
    return sum(classify(im).matches(colour, shape) for im in images) / max(len(images), 1)
