"""The toy world: seeded scenes whose truth we know, a classifier for them, held-out concepts and a
small Stable Diffusion model trained on them, so learning can be measured without real weights."""
from __future__ import annotations

from pathlib import Path

from ..errors import TIStudioError

MODEL_ASSET = Path(__file__).parent / "assets" / "toy-model"


def default_model_path() -> Path:
    """The shipped toy model: a diffusers SD1 folder (32 px images, text width 48)."""
    if not (MODEL_ASSET / "model_index.json").is_file():
        raise TIStudioError(f"the toy model is missing from {MODEL_ASSET}; rebuild it with "
                            "`tistudio toy train-base` or restore it from git")
    return MODEL_ASSET
