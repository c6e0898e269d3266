"""Bounds every reader enforces before it allocates: embedding files are small, so anything far
larger is a mistake or an attack (decompression bombs, absurd tensor shapes)."""
from __future__ import annotations

from pathlib import Path

from ...errors import TIStudioError

MAX_VECTORS = 75                 # A1111's limit: one 75-token prompt chunk
MAX_WIDTH = 8192                 # widest real text encoder is 1280; leave room for future ones
MAX_FILE_BYTES = 2 << 30         # LoRA files with bundled embeddings can be large; 2 GiB is not
MAX_JSON_BYTES = 64 << 20        # a 75 x 2048 embedding is ~4 MB of JSON
MAX_IMAGE_PIXELS = 64_000_000    # a pixel-encoded 75 x 2048 embedding needs ~3 M pixels


def check_file_size(path: Path) -> int:
    size = path.stat().st_size
    if size == 0:
        raise TIStudioError(f"{path}: file is empty; re-export the embedding")
    if size > MAX_FILE_BYTES:
        raise TIStudioError(f"{path}: file is {size >> 20} MiB, too large for an embedding "
                            f"(limit {MAX_FILE_BYTES >> 20} MiB)")
    return size


def check_shape(shape: tuple[int, ...], where: str) -> None:
    """A vector table is [1-75, width] (a 1-D tensor is one vector)."""
    ok = len(shape) in (1, 2) and 1 <= shape[-1] <= MAX_WIDTH and (len(shape) == 1 or 1 <= shape[0] <= MAX_VECTORS)
    if not ok:
        raise TIStudioError(f"{where}: embedding tensor has shape {tuple(shape)}; expected "
                            f"[1-{MAX_VECTORS} vectors, width <= {MAX_WIDTH}]")
