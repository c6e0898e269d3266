"""The one writer of torch pickles (`.pt`, `.bin`, `.pt.optim`, hypernetworks): torch's own zip
archive, cut down to the entries AUTOMATIC1111's safe unpickler accepts.

A1111 checks every name in the archive against `<folder>/data.pkl`, `<folder>/version` and
`<folder>/data/<number>` (newer releases also allow `byteorder` and `.data/serialization_id`) and
refuses the whole file otherwise ("The file may be malicious"). torch >= 2.x adds `.format_version`,
`.storage_alignment`, `byteorder` and `.data/serialization_id`, so a plain `torch.save` never loads
there. Every one of those records is optional to torch's reader: without `.format_version` it reads
storages by name, without `.storage_alignment` it assumes 64, without `byteorder` little-endian
(what every supported platform writes). We keep only the entries the strictest A1111 rule allows,
in torch's order, stored uncompressed with each storage 64-byte aligned as torch writes them, so
`torch.load(..., weights_only=True, mmap=True)` still works.

A short JSON note may ride in the archive's comment (A1111, ComfyUI and torch ignore it): SDXL
embeddings keep their name/step/base model there, because A1111 calls `.detach()` on every value
of an SDXL dict and so the dict itself must hold tensors only.
"""
from __future__ import annotations

import io
import json
import re
import struct
import zipfile
from pathlib import Path

import torch

from .atomic import write_with

# A1111's rule (modules/safe.py), restricted to the names its oldest and newest releases both allow.
ALLOWED_ENTRY = re.compile(r"^[^/]+/(data\.pkl|version|data/\d+)$")
ALIGNMENT = 64                 # torch's storage alignment (torch.serialization's default)
_PAD_FIELD = 0x4246            # the zip "extra field" id torch's writer pads with ("FB")
_LOCAL_HEADER = 30             # fixed part of a zip local file header
MAX_NOTE_BYTES = 60_000        # a zip comment holds at most 65,535 bytes


def dumps(obj: object, note: dict[str, str] | None = None) -> bytes:
    """`obj` as an A1111-acceptable torch archive, in memory (embeddings and optimizer states are
    small; a copy of the archive is cheap next to the tensors themselves)."""
    raw = io.BytesIO()
    torch.save(obj, raw)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(raw.getvalue())) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for name in src.namelist():
            if ALLOWED_ENTRY.match(name):
                _write_aligned(dst, out, name, src.read(name))
        if note:
            dst.comment = _note_bytes(note)
    return out.getvalue()


def save(obj: object, path: str | Path, *, note: dict[str, str] | None = None) -> Path:
    """Write `obj` to `path` atomically (file mode from the umask, see atomic.py)."""
    data = dumps(obj, note)
    return write_with(path, lambda tmp: Path(tmp).write_bytes(data))


def read_note(path: str | Path) -> dict[str, str]:
    """The JSON note in an archive's comment; {} when there is none or it is not ours."""
    try:
        with zipfile.ZipFile(path) as z:
            return parse_note(z.comment.decode("utf-8"))
    except (zipfile.BadZipFile, OSError, ValueError):
        return {}


def parse_note(text: str) -> dict[str, str]:
    """A note's JSON text as its string fields; {} when empty, damaged or not an object."""
    try:
        note = json.loads(text) if text else {}
    except ValueError:
        return {}
    return {str(k): v for k, v in note.items() if isinstance(v, str)} if isinstance(note, dict) else {}


def _note_bytes(note: dict[str, str]) -> bytes:
    data = json.dumps({k: v for k, v in note.items() if isinstance(v, str)}, sort_keys=True).encode("utf-8")
    if len(data) > MAX_NOTE_BYTES:
        raise ValueError(f"pickle note is {len(data)} bytes; at most {MAX_NOTE_BYTES} fit a zip comment")
    return data


def _write_aligned(dst: zipfile.ZipFile, out: io.BytesIO, name: str, data: bytes) -> None:
    """Add one stored entry whose data starts on an ALIGNMENT boundary, padding the local header's
    extra field as torch's writer does."""
    info = zipfile.ZipInfo(name)           # fixed 1980-01-01 date: identical input, identical bytes
    info.compress_type = zipfile.ZIP_STORED
    start = out.tell() + _LOCAL_HEADER + len(name.encode("utf-8")) + 4
    pad = -start % ALIGNMENT
    info.extra = struct.pack("<HH", _PAD_FIELD, pad) + b"Z" * pad
    dst.writestr(info, data)
