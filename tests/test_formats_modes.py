"""Every file we write gets the mode a plain open() would give under the process umask (0644 under
022), whatever the writer library does with its own temporaries (safetensors replaces ours)."""
from __future__ import annotations

import os
import stat

import pytest
import torch

from tistudio import api
from tistudio.embedding.embedding import Embedding
from tistudio.embedding.formats import save_embedding, save_png_embedding
from tistudio.embedding.formats.a1111_optim import save_optim
from tistudio.train.run import train

from run_config import quick_config


@pytest.fixture(params=[0o022, 0o027], ids=["umask022", "umask027"])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def written_files(root):
    return sorted(p for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize("fmt,name", [("a1111-pt", "e.pt"), ("a1111-png", "e.png"), ("safetensors", "e.safetensors"),
                                      ("diffusers", "learned_embeds.bin"), ("diffusers", "folder")])
@pytest.mark.parametrize("widths", [(32,), (32, 64)], ids=["one-encoder", "sdxl"])
def test_each_format_gets_the_umask_mode(tmp_path, umask, fmt, name, widths):
    if fmt == "diffusers" and name.endswith(".bin") and len(widths) == 2:
        pytest.skip("an SDXL embedding in diffusers layout is a folder")
    emb = Embedding("e", tuple(torch.randn(2, w) for w in widths), step=3)
    save_embedding(emb, tmp_path / "out" / name, fmt)
    files = written_files(tmp_path / "out")
    assert files and {mode(p) for p in files} == {0o666 & ~umask}


def test_png_embedding_and_optim_side_file_get_the_umask_mode(tmp_path, umask):
    emb = Embedding("e", (torch.randn(2, 16),), step=3)
    paths = [save_png_embedding(emb, tmp_path / "e.png"),
             save_optim(tmp_path / "e.pt", emb.vectors, {"state": {}, "param_groups": []})]
    assert [mode(p) for p in paths] == [0o666 & ~umask] * 2


def test_every_file_of_a_training_run_gets_the_umask_mode(tiny_models, dataset, tmp_path, umask):
    c = tiny_models["sd1"]
    path = api.create_embedding(c, "tok", "cat", 1, tmp_path / "emb")
    cfg = quick_config(path, dataset, tmp_path, steps=2, save_every=2, preview_every=2, preview_steps=1,
                       png_embeddings=True, formats=("a1111-pt", "safetensors"))
    train(cfg, components=c, progress=False)
    files = written_files(tmp_path / "runs") + written_files(tmp_path / "out") + [path]
    kinds = {p.suffix for p in files}
    assert {".pt", ".safetensors", ".png", ".csv", ".toml"} <= kinds
    assert {str(p.relative_to(tmp_path)): mode(p) for p in files} == \
        {str(p.relative_to(tmp_path)): 0o666 & ~umask for p in files}
