"""Where generated images go and what they record, as A1111 does it: `OUT/NNNNN-SEED.png`, the number
one past the highest already in the folder (so nothing is ever overwritten), `--seed -1` drawn at
random and written into the name and the infotext, and each embedding file's short hash for the
infotext's `TI hashes` field."""
from __future__ import annotations

import random
import re
from pathlib import Path

from ..atomic import as_user_error
from ..errors import TIStudioError
from ..hashing import file_sha256

RANDOM_SEED = -1
SEED_RANGE = 2**32           # seeds are drawn from [0, 2^32), the range A1111 draws from
EMBEDDING_HASH_CHARS = 12    # A1111's embedding "shorthash": the first 12 hex digits of the file's sha256
_NUMBERED = re.compile(r"^(\d+)-")


def check_out_dir(out_dir: str | Path) -> Path:
    """The output folder, made now: one that cannot be (a file, an unwritable place) is refused
    before any model is loaded or image generated."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise TIStudioError(f"--out {out_dir}: is a file; give a folder (created if missing), e.g. "
                            f"--out {out.parent / 'outputs'}")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise as_user_error(exc, out) or TIStudioError(
            f"--out {out_dir}: cannot create it ({exc.strerror or exc}); choose another folder") from None
    return out


def resolve_seed(seed: int) -> int:
    """`-1` becomes a random seed; any other seed is kept."""
    return random.SystemRandom().randrange(SEED_RANGE) if seed == RANDOM_SEED else seed


def next_number(folder: Path) -> int:
    """One past the highest leading number of the folder's `NNNNN-...` files (0 in an empty folder)."""
    numbers = [int(m.group(1)) for p in folder.iterdir() if (m := _NUMBERED.match(p.name))] \
        if folder.is_dir() else []
    return max(numbers, default=-1) + 1


def image_paths(folder: Path, seeds: list[int]) -> list[Path]:
    """`NNNNN-SEED.png` for each seed, numbered on from what the folder holds; never an existing file."""
    number, paths = next_number(folder), []
    for seed in seeds:
        while (path := folder / f"{number:05}-{seed}.png").exists():
            number += 1
        paths.append(path)
        number += 1
    return paths


def embedding_hash(path: Path) -> str | None:
    """A1111's short hash of an embedding file; None for a folder (a diffusers layout has no one file)."""
    if not Path(path).is_file():
        return None
    return file_sha256(path)[:EMBEDDING_HASH_CHARS]
