"""Write a small dataset folder of one concept: PNG images with .txt captions beside them."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..atomic import write_text, write_with
from .concepts import Concept
from .scenes import render


def render_concept(concept: Concept, n: int, out: str | Path, size: int = 32, seed: int = 0) -> list[Path]:
    """`n` images of `concept` at random sizes, places and backgrounds. Captions describe everything
    but the concept's colour ("a star on a black background"), so [filewords] never leak its name."""
    out = Path(out)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        scene = concept.scene(rng)
        path = out / f"{i:04d}.png"
        write_with(path, lambda tmp, scene=scene: render(scene, size).save(tmp, format="PNG"))
        write_text(path.with_suffix(".txt"), scene.caption("a {}", with_colour=False, with_background=True))
        paths.append(path)
    return paths
