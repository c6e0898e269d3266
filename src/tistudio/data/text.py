"""Reading the small text files users hand us (captions, templates) with a size cap, so a hostile
or mistaken multi-GB file is refused instead of read into memory."""
from __future__ import annotations

from pathlib import Path

from ..errors import TIStudioError


def read_text_capped(path: str | Path, limit: int, what: str) -> str:
    """UTF-8 text (a BOM is dropped) of at most `limit` bytes; `what` names the file in errors."""
    with open(path, "rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise TIStudioError(f"{what} {path} is larger than {limit // 1024} KiB; is it really a text file?")
    return data.decode("utf-8-sig")
