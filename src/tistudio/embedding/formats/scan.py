"""Scan an embeddings folder recursively as A1111 does: every .pt/.bin/.safetensors and image file
is an embedding whose trigger is its file stem (PNG/WebP: the name stored inside). Unlike A1111,
two files with the same trigger are reported, not silently shadowed (unless they hold the same
vectors: `NAME.pt` + `NAME.safetensors`, as `train` writes by default, are one embedding), and a
diffusers SDXL folder (learned_embeds + learned_embeds_2) is one embedding named after the folder."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import TIStudioError
from .diffusers_fmt import STEMS
from .registry import Loaded, read_embedding

log = logging.getLogger(__name__)
SUFFIXES = {".pt", ".bin", ".safetensors", ".png", ".webp", ".jxl", ".avif"}


@dataclass
class ScanResult:
    embeddings: dict[str, Loaded] = field(default_factory=dict)     # trigger -> first file (path order)
    duplicates: dict[str, list[Path]] = field(default_factory=dict)  # trigger -> every file using it
    copies: dict[str, list[Path]] = field(default_factory=dict)      # trigger -> other files, same vectors
    skipped: list[tuple[Path, str]] = field(default_factory=list)    # unreadable files and why


def _candidates(root: Path, within: Path | None, skipped: list) -> list[Path]:
    """Files and diffusers SDXL folders, in a stable order; symlinked folders are followed once.
    With `within`, a file or folder whose real location lies outside it is skipped (a web UI's
    root: a link inside the embeddings folder must not reach the rest of the disk)."""
    found, seen = [], set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        if within is not None and not _inside(real, within):
            skipped.append((Path(folder), f"outside {within}; not read"))
            dirs[:] = []
            continue
        dirs.sort()
        here = Path(folder)
        names = {n for n in files if Path(n).suffix.lower() in SUFFIXES and not n.startswith(".")}
        if any(Path(n).stem == STEMS[1] for n in names) and any(Path(n).stem == STEMS[0] for n in names):
            found.append(here)
            names = {n for n in names if Path(n).stem not in STEMS}
        for n in sorted(names):
            if within is not None and not _inside(os.path.realpath(here / n), within):
                skipped.append((here / n, f"outside {within}; not read"))
            elif _size(here / n) > 0:
                found.append(here / n)
    return found


def _inside(real: str, within: Path) -> bool:
    return Path(real).is_relative_to(within)


def _size(path: Path) -> int:
    """0 for empty files and broken links alike: A1111 skips both."""
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _same_vectors(a: Loaded, b: Loaded) -> bool:
    va, vb = a.embedding.vectors, b.embedding.vectors
    return len(va) == len(vb) and all(x.shape == y.shape and bool((x == y).all()) for x, y in zip(va, vb))


def scan_embeddings(root: str | Path, within: str | Path | None = None) -> ScanResult:
    root = Path(root)
    if not root.is_dir():
        raise TIStudioError(f"{root}: embeddings folder not found")
    result, first_of = ScanResult(), {}  # lower-cased trigger -> (trigger, path)
    within = Path(os.path.realpath(within)) if within is not None else None  # resolved once, not per file
    for path in _candidates(root, within, result.skipped):
        try:
            loaded = read_embedding(path)
        except TIStudioError as exc:
            result.skipped.append((path, str(exc)))
            log.warning("skipping %s", exc)
            continue
        trigger = loaded.embedding.name
        # Prompts are lower-cased by the tokenizer, so "Foo" and "foo" collide too.
        key = trigger.lower()
        if key in first_of:
            kept, kept_path = first_of[key]
            if _same_vectors(result.embeddings[kept], loaded):
                result.copies.setdefault(kept, []).append(path)
                continue
            result.duplicates.setdefault(kept, [kept_path]).append(path)
            log.warning("trigger %r is used by %s and %s; the first is used", kept, kept_path, path)
            continue
        first_of[key] = (trigger, path)
        result.embeddings[trigger] = loaded
    return result
