"""A1111's pixel encoding of an embedding (docs/formats.md): the zlib'd JSON split into nibbles,
laid out as two RGB blocks either side of the preview, so it survives a lossless re-save that
drops text chunks. Data lives in the low nibble, scrambled with an LCG keystream; the high nibble
carries a decorative dot pattern only."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from .png_json import inflate

_LCG_A, _LCG_C = 1664525, 1013904223
_MAX_LAYOUT_TRIES = 64  # candidate block widths to try before giving up on an image


def keystream(n: int) -> np.ndarray:
    """seed(k+1) = (A*seed(k) + C) mod 2^32 from seed 0, yielding seed mod 255 (n values).
    Vectorised by jumping: seed(k+m) = A^m*seed(k) + seed(m), since seed(m) is the image of 0."""
    seeds = np.empty(n, np.uint64)
    s, m = 0, min(n, 256)
    for i in range(m):
        s = (_LCG_A * s + _LCG_C) % 2**32
        seeds[i] = s
    while m < n:
        take = min(m, n - m)
        jump = np.uint64(pow(_LCG_A, m, 2**32))
        # uint64 products wrap modulo 2^64, which is harmless modulo 2^32.
        seeds[m:m + take] = (jump * seeds[:take] + seeds[m - 1]) & np.uint64(0xFFFFFFFF)
        m += take
    return (seeds % 255).astype(np.uint8)


def block_size(n_bytes: int, height: int) -> int:
    """Cells per block: round up to a multiple of h, then of 3h (always adding at least one)."""
    n = n_bytes + (height - n_bytes % height)
    return n + (3 * height - n % (3 * height))


def _scramble(block: np.ndarray) -> np.ndarray:
    return block ^ (keystream(block.size).reshape(block.shape) & 0x0F)


def _decorate(block: np.ndarray, shades: list[int]) -> np.ndarray:
    """Grey dots on an 8-px grid (odd rows shifted 4 px) whose high nibble is XORed in."""
    h, w, _ = block.shape
    canvas = Image.new("RGB", (w, h))
    draw = ImageDraw.Draw(canvas)
    i = 0
    for x in range(-6, w, 8):
        for row, y in enumerate(range(-6, h, 8)):
            off = 4 if row % 2 else 0
            shade = shades[i % len(shades)]
            i += 1
            draw.ellipse((x + off, y, x + 6 + off, y + 6), fill=(shade, shade, shade))
    return block ^ (np.asarray(canvas, np.uint8) & 0xF0)


def shades_of(first_vector: list[float]) -> list[int]:
    values = np.abs(np.nan_to_num(np.asarray(first_vector[:1024], np.float64), posinf=0, neginf=0))
    top = values.max() if values.size else 0.0
    return [0] if top <= 0 else (values / top * 255).astype(np.uint8).tolist()


def encode(payload: bytes, image: Image.Image, shades: list[int]) -> Image.Image:
    """The preview with a low-nibble block on its left and a high-nibble block on its right."""
    image = image.convert("RGB")
    h = image.height
    data = np.frombuffer(payload, np.uint8)
    n = block_size(data.size, h)
    low = np.resize(data & 0x0F, n).reshape(h, -1, 3)    # padding repeats the data from the start
    high = np.resize(data >> 4, n).reshape(h, -1, 3)
    low = _scramble(_decorate(low, shades))
    high = _scramble(_decorate(high, shades[::-1]))
    w = low.shape[1]
    canvas = Image.new("RGB", (image.width + 2 * w + 2, h))
    canvas.paste(Image.fromarray(low, "RGB"), (0, 0))
    canvas.paste(image, (w + 1, 0))
    canvas.paste(Image.fromarray(high, "RGB"), (w + 1 + image.width + 1, 0))
    return canvas


def _trim_black(arr: np.ndarray) -> np.ndarray:
    """Drop border rows/columns without any pixel whose three channels are all > 0 (a viewer or
    editor may have added black borders)."""
    lit = (arr > 0).all(axis=2)
    rows, cols = np.flatnonzero(lit.any(axis=1)), np.flatnonzero(lit.any(axis=0))
    if rows.size == 0 or cols.size == 0:
        return arr
    return arr[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def _widths(low: np.ndarray) -> list[int]:
    """Block widths w whose two separator columns (w and total-1-w) have all-zero low nibbles.
    Both blocks have the same width, so this finds the layout even when the preview itself has
    black columns (A1111's first/last-black-column rule then fails)."""
    black = low.max(axis=(0, 2)) == 0
    total = black.size
    return [w for w in range(1, (total - 1) // 2) if black[w] and black[total - 1 - w]][:_MAX_LAYOUT_TRIES]


def decode(image: Image.Image, where: str) -> bytes | None:
    """The JSON bytes hidden in an image's pixels, or None when it holds no embedding."""
    arr = np.asarray(image.convert("RGB"), np.uint8)
    for view in (arr, _trim_black(arr)):
        low = view & 0x0F
        for w in _widths(low):
            lo, hi = _scramble(low[:, :w]), _scramble(low[:, -w:])
            found = inflate(((hi << 4) | lo).tobytes(), where)
            if found is not None:
                return found
    return None
