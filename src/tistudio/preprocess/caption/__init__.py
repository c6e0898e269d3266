"""Captioners (BLIP, ONNX booru taggers) from local files only, and how their text meets a caption
the user already wrote."""
from __future__ import annotations

from typing import Callable

from PIL import Image

from ..options import CaptionOptions

Captioner = Callable[[Image.Image], str]


def join_caption(*parts: str | None) -> str:
    return ", ".join(p.strip() for p in parts if p and p.strip())


def load_captioners(options: CaptionOptions) -> list[Captioner]:
    """BLIP first, then the tagger (a sentence reads better before a tag list). Loading happens once,
    before any image is touched, so a wrong model path fails fast with one line."""
    captioners: list[Captioner] = []
    if options.blip is not None:
        from .blip import BlipCaptioner

        captioners.append(BlipCaptioner(options.blip, options.blip_options))
    if options.tagger is not None:
        from .tagger import OnnxTagger

        captioners.append(OnnxTagger(options.tagger, options.tags, options.tagger_options))
    return captioners


def merge_existing(generated: str, existing: str | None, action: str) -> str:
    """ignore: the captioners' text; copy: the user's caption (captioners' text only where none
    exists); prepend: user's then captioners'; append: captioners' then user's."""
    if action == "ignore" or not existing or not existing.strip():
        return generated
    if action == "copy":
        return existing.strip()
    if action == "prepend":
        return join_caption(existing, generated)
    return join_caption(generated, existing)
