"""Reading the small text files users hand us (captions, templates) with a size cap, so a hostile
or mistaken multi-GB file is refused instead of read into memory."""
from __future__ import annotations

import codecs
from pathlib import Path

from ..errors import TIStudioError


def read_text_capped(path: str | Path, limit: int, what: str, encoding: str = "utf-8") -> str:
    """Text of at most `limit` bytes in `encoding` (UTF-8: a BOM is dropped); `what` names the file
    in errors. Undecodable bytes raise UnicodeDecodeError, never a silent U+FFFD."""
    with open(path, "rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise TIStudioError(f"{what} {path} is larger than {limit // 1024} KiB; is it really a text file?")
    return data.decode("utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding)
