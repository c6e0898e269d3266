"""The caption drawn on a PNG embedding's preview, so a shared image says what it carries:
`<name>` top-left; model name, [hash] and "{n}v {steps}s" along the bottom, over dark gradients
that keep white text readable on any preview."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: a fixed bitmap font still works
        return ImageFont.load_default()


def _darken(image: Image.Image) -> Image.Image:
    """Fade to ~80% black over the top third and the bottom quarter."""
    h = image.height
    y = np.linspace(0.0, 1.0, h)
    top = np.clip(1 - y / 0.33, 0, 1) ** 1.5
    bottom = np.clip((y - 0.75) / 0.25, 0, 1) ** 1.5
    keep = 1 - 0.8 * np.maximum(top, bottom)
    arr = np.asarray(image, np.float32) * keep[:, None, None]
    return Image.fromarray(arr.round().astype(np.uint8), "RGB")


def _fit(draw: ImageDraw.ImageDraw, text: str, size: int, max_width: float) -> ImageFont.ImageFont:
    font = _font(size)
    while size > 6 and draw.textlength(text, font=font) > max_width:
        size -= max(1, size // 8)
        font = _font(size)
    return font


def caption(image: Image.Image, title: str, left: str, middle: str, right: str) -> Image.Image:
    out = _darken(image.convert("RGB"))
    w, h = out.size
    draw = ImageDraw.Draw(out)
    pad = max(2, w // 50)
    white = (255, 255, 255)
    title_font = _fit(draw, title, min(72, max(8, h // 8)), w * 0.75 - 2 * pad)
    draw.text((pad, pad), title, font=title_font, fill=white, anchor="lt")
    foot = min(32, max(6, h // 20))
    for text, x, anchor in ((left, pad, "ls"), (middle, w / 2, "ms"), (right, w - pad, "rs")):
        if text:
            draw.text((x, h - pad), text, font=_fit(draw, text, foot, w / 3 - pad), fill=white, anchor=anchor)
    return out
