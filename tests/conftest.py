"""Shared fixtures: tiny random models of each family (built once per session, also saved as
diffusers folders for CLI runs) and a small dataset of real image files with captions."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def tiny_models():
    """{family: Components}. Tests must not modify their weights (they are frozen)."""
    from tistudio.models.tiny import build_tiny

    return {f: build_tiny(f) for f in ("sd1", "sd2", "sdxl")}


@pytest.fixture(scope="session")
def tiny_model_dirs(tiny_models, tmp_path_factory):
    """{family: path of a diffusers folder holding the same weights as tiny_models[family]}."""
    from tistudio.models.tiny import save_diffusers_folder

    root = tmp_path_factory.mktemp("tiny-models")
    return {f: save_diffusers_folder(c, root / f) for f, c in tiny_models.items()}


def make_dataset(folder, n: int = 4, size: int = 64, seed: int = 0):
    """n images of coloured squares on noise, captioned by file name ("0000-a red square.png")."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    colours = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 200, 30), "yellow": (230, 220, 20)}
    for i in range(n):
        name, rgb = list(colours.items())[i % len(colours)]
        arr = (rng.random((size, size, 3)) * 60).astype(np.uint8)
        lo, hi = size // 4, 3 * size // 4
        arr[lo:hi, lo:hi] = rgb
        Image.fromarray(arr).save(folder / f"{i:04d}-a {name} square.png")
    return folder


@pytest.fixture
def dataset(tmp_path):
    return make_dataset(tmp_path / "data")
