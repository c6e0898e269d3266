"""The caption of a training image, as the A1111 Train tab derives it (README, "Training").

A sidecar `<stem>.txt` wins and is used verbatim (stripped); otherwise the caption comes from the file
name. `--filename-regex` / `--filename-join` only ever apply to file-name captions.
"""
from __future__ import annotations

import codecs
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


def check_encoding(encoding: str) -> str:
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise TIStudioError(f"--caption-encoding {encoding!r}: not an encoding Python knows; use e.g. "
                            "utf-8, cp1252, shift_jis, gbk") from None
    return encoding


def read_caption(sidecar: Path, encoding: str = "utf-8") -> str:
    """The caption text, stripped. UnicodeDecodeError for bytes that are not `encoding` (callers
    collect every such file: see undecodable_message); other failures are one-line errors."""
    try:
        return read_text_capped(sidecar, CAPTION_LIMIT, "caption file", encoding).strip()
    except OSError as exc:
        raise TIStudioError(f"caption file {sidecar} cannot be read ({exc.strerror or exc}); fix its "
                            "permissions or delete it") from None


# The second way out, for a reader that cannot take another encoding itself (train, check).
CONVERT_FIX = "let `tistudio preprocess SRC DST --caption-encoding ENC` (e.g. cp1252) write UTF-8 copies"


def undecodable_message(sidecars: list[Path], encoding: str = "utf-8", fix: str = CONVERT_FIX) -> str:
    """One line naming every caption file that is not `encoding` text, and the two ways out."""
    folder = sidecars[0].parent
    names = ", ".join(p.name if p.parent == folder else str(p) for p in sidecars)
    return (f"{len(sidecars)} caption file(s) in {folder} are not {encoding} text: {names}; re-save them "
            f"as UTF-8, or {fix}")


def name_in_text(name: str, text: str) -> bool:
    """Whether `name` occurs in `text` as a whole word (any case), as a trigger would match it."""
    return re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text, re.IGNORECASE) is not None


class UndecodableCaption(TIStudioError):
    """A caption file that is not UTF-8 text; `path` lets a caller name every such file at once."""

    def __init__(self, path: Path):
        super().__init__(undecodable_message([path]))
        self.path = path


class MissingCaption(TIStudioError):
    """An image without the sidecar its concept requires (caption_source = "sidecar")."""

    def __init__(self, path: Path):
        super().__init__(f"caption file {path} is missing (caption_source = \"sidecar\"); write it or use "
                         "caption_source = \"auto\"")
        self.path = path


def caption_for(image_path: Path, regex: str | None = None, join: str = " ", source: str = "auto") -> str:
    """`source` (a concept's caption_source): auto = sidecar, else file name; sidecar = the sidecar
    only (MissingCaption without one); filename = the file name even beside a sidecar."""
    image_path = Path(image_path)
    sidecar = sidecar_path(image_path)
    if source != "filename" and sidecar.is_file():
        try:
            return read_caption(sidecar)
        except UnicodeDecodeError:
            raise UndecodableCaption(sidecar) from None
    if source == "sidecar":
        raise MissingCaption(sidecar)
    text = _LEADING_NUMBERS.sub("", image_path.stem, count=1)
    if not regex:
        return text
    pattern = compile_filename_regex(regex)
    # Like re.findall: a pattern with one capturing group yields that group, otherwise the whole match.
    group = 1 if pattern.groups == 1 else 0
    return join.join(m.group(group) or "" for m in pattern.finditer(text))
