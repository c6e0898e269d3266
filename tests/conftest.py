"""Shared fixtures: tiny random models of each family (built once per session, also saved as
diffusers folders for CLI runs) and a small dataset of real image files with captions."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

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


@pytest.fixture
def dataset(tmp_path):
    """Four 64-px images of coloured squares, captioned by file name ("00000-0-a red square.png")."""
    from tistudio.toy_data import write_shapes_dataset

    return write_shapes_dataset(tmp_path / "data", n=4)


@pytest.fixture(scope="session")
def toy_model_dir():
    """The shipped toy model (tistudio.toy): the model for tests that need one that can really learn
    (fast plumbing tests keep the tiny random models)."""
    from tistudio.toy import default_model_path

    return default_model_path()


@pytest.fixture(scope="session")
def toy_model(toy_model_dir):
    """The toy model's Components. Tests must not modify its weights."""
    from tistudio.models.load import load_model

    return load_model(toy_model_dir)
