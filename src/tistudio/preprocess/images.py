"""Pure PIL operations on one picture: load it (EXIF orientation, any mode to 8-bit RGB, alpha kept
as a loss-weight layer), cover crop + resize, keep size, mirror, split an oversized image in tiles.

A `Picture` carries an optional weight layer in the trainer's attention-map encoding (grey value
v <= 127 means weight v/127, v > 127 means 1 + 4(v-127)/128), so every geometric operation moves the
weights with the pixels and the map can be saved as `<name>_att.png` beside the image.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..atomic import write_with

RESAMPLE = Image.Resampling.LANCZOS
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
TO_RGBA_MODES = ("LA", "La", "PA", "RGBa", "RGBA")


class BadImage(Exception):
    """A source file that cannot be used; `str()` is the reason shown in the skipped list."""


@dataclass(frozen=True)
class Picture:
    rgb: Image.Image
    weight: Image.Image | None = None  # mode "L", attention-map encoding, same size as rgb

    @property
    def size(self) -> tuple[int, int]:
        return self.rgb.size

    def map(self, fn: Callable[[Image.Image], Image.Image]) -> "Picture":
        return Picture(fn(self.rgb), fn(self.weight) if self.weight is not None else None)


# ---------------------------------------------------------------- weights (attention-map encoding)

def decode_weight(grey: np.ndarray) -> np.ndarray:
    g = grey.astype(np.float32)
    return np.where(g <= 127, g / 127.0, 1.0 + 4.0 * (g - 127.0) / 128.0)


def encode_weight(weight: np.ndarray) -> Image.Image:
    w = np.clip(weight, 0.0, 5.0)
    grey = np.where(w <= 1.0, w * 127.0, 127.0 + (w - 1.0) * 32.0)
    return Image.fromarray(np.rint(grey).astype(np.uint8), mode="L")


def attach_weight_map(picture: Picture, att_path: Path) -> Picture:
    """Combine a user's `<stem>_att.png` with the alpha weights (product of the two weights)."""
    with Image.open(att_path) as att:
        grey = att.convert("L").resize(picture.size, Image.Resampling.BILINEAR)
    weight = decode_weight(np.asarray(grey))
    if picture.weight is not None:
        weight = weight * decode_weight(np.asarray(picture.weight))
    return Picture(picture.rgb, encode_weight(weight))


# ---------------------------------------------------------------- loading

def _to_8bit_grey(im: Image.Image) -> Image.Image:
    """16-bit and float greyscale to "L": PIL's own convert clips 16-bit values instead of scaling."""
    arr = np.asarray(im).astype(np.float64)
    if im.mode == "F":
        arr = arr * 255.0 if arr.size and arr.max() <= 1.0 else arr
    elif arr.size and arr.max() > 255:
        arr = arr / 257.0  # 65535 -> 255
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="L")


def to_rgb_and_alpha(im: Image.Image) -> tuple[Image.Image, Image.Image | None]:
    """Any PIL mode to (RGB, alpha or None). A fully opaque alpha counts as none."""
    if im.mode in SIXTEEN_BIT_MODES or im.mode == "F":
        return _to_8bit_grey(im).convert("RGB"), None
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif im.mode in TO_RGBA_MODES:
        im = im.convert("RGBA")
    if im.mode != "RGBA":
        return im.convert("RGB"), None  # 1, L, CMYK, YCbCr, LAB, HSV, RGBX
    alpha = im.getchannel("A")
    if alpha.getextrema()[0] == 255:
        return im.convert("RGB"), None
    return im, alpha


def load_picture(path: Path, max_pixels: int, alpha: str = "weight",
                 background: tuple[int, int, int] = (255, 255, 255)) -> Picture:
    """Open, check and normalise one file; raise BadImage with a short reason when it is unusable."""
    if path.stat().st_size == 0:
        raise BadImage("empty file (0 bytes)")
    with warnings.catch_warnings():
        # We apply our own pixel limit before decoding; PIL's warning would only repeat it.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise BadImage(f"{w}x{h} is {w * h / 1e6:.0f} MP, past the --max-pixels limit {max_pixels}")
                im.load()
                oriented = ImageOps.exif_transpose(im)
        except Image.DecompressionBombError as exc:
            raise BadImage(f"gigantic image refused by PIL ({exc})") from None
        except UnidentifiedImageError:
            raise BadImage("not an image PIL can read") from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise BadImage(f"corrupt or truncated ({exc})") from None
    rgb, alpha_layer = to_rgb_and_alpha(oriented)
    if alpha_layer is None:
        return Picture(rgb)
    flat = Image.new("RGBA", rgb.size, background + (255,))
    flat = Image.alpha_composite(flat, rgb).convert("RGB")
    if alpha == "flatten":
        return Picture(flat)
    # Opaque -> 127 (weight 1.0), transparent -> 0 (ignored by the loss).
    return Picture(flat, alpha_layer.point(lambda a: round(a * 127 / 255)))


# ---------------------------------------------------------------- geometry

def crop_box(size: tuple[int, int], target: tuple[int, int],
             focus: tuple[float, float] | None = None) -> tuple[float, float, float, float]:
    """The largest source box with the target's aspect, centred on `focus` (source pixels, default
    the centre) and shifted to stay inside the image."""
    w, h = size
    tw, th = target
    scale = max(tw / w, th / h)  # cover: the scaled image is at least target-sized on both axes
    bw, bh = min(w, tw / scale), min(h, th / scale)
    fx, fy = focus if focus is not None else (w / 2, h / 2)
    left = min(max(fx - bw / 2, 0.0), w - bw)
    top = min(max(fy - bh / 2, 0.0), h - bh)
    return (left, top, left + bw, top + bh)


def cover_resize(picture: Picture, target: tuple[int, int],
                 focus: tuple[float, float] | None = None) -> Picture:
    box = crop_box(picture.size, target, focus)
    return picture.map(lambda im: im.resize(target, RESAMPLE, box=box))


def keep_size(picture: Picture, multiple: int = 8) -> Picture:
    """Original size, centre-trimmed to a multiple of 8 (the VAE's latent grid)."""
    w, h = picture.size
    nw, nh = max(multiple, w - w % multiple), max(multiple, h - h % multiple)
    if (nw, nh) == (w, h):
        return picture
    return cover_resize(picture, (nw, nh))


def mirror(picture: Picture) -> Picture:
    return picture.map(ImageOps.mirror)


def overshoot(size: tuple[int, int], target: tuple[int, int]) -> float:
    """How many times longer than the target's shape the image is along its long axis (>= 1)."""
    (w, h), (tw, th) = size, target
    r = (h * tw) / (w * th)
    return max(r, 1 / r)


def is_oversized(size: tuple[int, int], target: tuple[int, int], threshold: float) -> bool:
    return overshoot(size, target) > 1.0 + threshold


def split_tiles(picture: Picture, target: tuple[int, int], overlap: float) -> list[Picture]:
    """Scale the short axis to the target, then cut evenly spaced target-sized tiles along the long
    axis, neighbours sharing at least `overlap` of a tile; the first and last touch the edges."""
    (w, h), (tw, th) = picture.size, target
    tall = h * tw > w * th
    length = h * tw / w if tall else w * th / h  # long axis after scaling
    tile = th if tall else tw
    n = max(2, math.ceil((length - tile * overlap) / (tile * (1.0 - overlap))))
    to_source = (w / tw) if tall else (h / th)
    tiles = []
    for i in range(n):
        start = (length - tile) * i / (n - 1)
        a, b = start * to_source, (start + tile) * to_source
        box = (0.0, a, float(w), b) if tall else (a, 0.0, b, float(h))
        tiles.append(picture.map(lambda im, box=box: im.resize(target, RESAMPLE, box=box)))
    return tiles


def save_png(image: Image.Image, path: Path) -> Path:
    return write_with(path, lambda tmp: image.save(tmp, format="PNG"))
