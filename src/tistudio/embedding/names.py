"""What an embedding may be called: one rule, used by create, train's outputs, convert --name and
the web UI (all through validate_name), and quoted in help texts. Standard library only, so the CLI
can show the rule without importing torch."""
from __future__ import annotations

import re

from ..errors import TIStudioError

# A trigger word must survive being a file name and a prompt word on every OS.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.\-]{0,63}$")
NAME_RULE = ("1-64 letters, digits, spaces, '-', '_' or '.', starting with a letter or digit, not "
             "ending in '.' or a space, no '..'")
# The name becomes NAME.pt, NAME.safetensors...: a name already ending so would double it (foo.pt.pt).
FILE_SUFFIXES = (".pt", ".bin", ".safetensors", ".png", ".webp", ".ckpt")


def validate_name(name: str) -> str:
    if not _NAME_RE.match(name or "") or name.endswith((".", " ")) or ".." in name:
        raise TIStudioError(f"embedding name {name!r} is not allowed; use {NAME_RULE} (no path separators)")
    suffix = next((s for s in FILE_SUFFIXES if name.lower().endswith(s)), None)
    if suffix:
        raise TIStudioError(f"embedding name {name!r} ends in {suffix}; give the name without an extension "
                            f"({name[:-len(suffix)]!r}): the file extension comes from --format")
    return name
