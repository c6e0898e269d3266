"""The one file hash: sha256 read in 1 MiB blocks (checkpoints are GBs). A1111's short hashes are
its prefixes: 10 hex digits for models and hypernetworks, 12 for embeddings."""
from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path: str | Path) -> str:
    """sha256 of a file, or of a folder's files in name order (a diffusers-format embedding)."""
    path = Path(path)
    h = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]:
        with open(file, "rb") as fh:
            for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()
