"""Test helper: a small captioned dataset written to disk: coloured squares on dark noise, named the way
A1111's preprocessing names files ("00000-0-a red square.png"), so captions come from file names."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 200, 30), "yellow": (230, 220, 20)}


def write_shapes_dataset(folder: str | Path, n: int = 8, size: int = 64, seed: int = 0) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = list(COLOURS)
    for i in range(n):
        name = names[i % len(names)]
        arr = (rng.random((size, size, 3)) * 60).astype(np.uint8)
        side = int(rng.integers(size // 3, size // 2))
        x, y = rng.integers(0, size - side, 2)
        arr[y:y + side, x:x + side] = COLOURS[name]
        Image.fromarray(arr).save(folder / f"{i:05d}-0-a {name} square.png")
    return folder
