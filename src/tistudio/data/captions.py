"""The caption of a training image, as the A1111 Train tab derives it (REFERENCE.md §2 "Captions").

A sidecar `<stem>.txt` wins and is used verbatim (stripped); otherwise the caption comes from the file
name. `--filename-regex` / `--filename-join` only ever apply to file-name captions.
"""
from __future__ import annotations

import re
from pathlib import Path

from ..errors import TIStudioError
from .text import read_text_capped

CAPTION_LIMIT = 64 * 1024  # far beyond any prompt (CLIP reads 75 tokens per chunk)

# Dataset tools number their outputs ("000001-1-a man in suit.png"); the number is not a caption.
_LEADING_NUMBERS = re.compile(r"^[-\d]+\s*")


def sidecar_path(image_path: Path) -> Path:
    return Path(image_path).with_suffix(".txt")


def compile_filename_regex(regex: str) -> re.Pattern:
    try:
        return re.compile(regex)
    except re.error as exc:
        raise TIStudioError(f"--filename-regex {regex!r} is not a valid regular expression ({exc}); "
                            r"fix it, e.g. '\w+'") from None


def caption_for(image_path: Path, regex: str | None = None, join: str = " ") -> str:
    image_path = Path(image_path)
    sidecar = sidecar_path(image_path)
    if sidecar.is_file():
        try:
            return read_text_capped(sidecar, CAPTION_LIMIT, "caption file").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise TIStudioError(f"caption file {sidecar} cannot be read ({exc}); save it as UTF-8 "
                                "text or delete it") from None
    text = _LEADING_NUMBERS.sub("", image_path.stem, count=1)
    if not regex:
        return text
    pattern = compile_filename_regex(regex)
    # Like re.findall: a pattern with one capturing group yields that group, otherwise the whole match.
    group = 1 if pattern.groups == 1 else 0
    return join.join(m.group(group) or "" for m in pattern.finditer(text))
