"""--vae (models/vae.py): another VAE for the latent cache and previews, from a diffusers folder or a
single file; --train-encoders l|g (SDXL): only one encoder's vectors train."""
from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import save_file

from tistudio import api
from tistudio.config import RecipeConfig, TrainConfig
from tistudio.embedding.formats import load_embedding
from tistudio.errors import TIStudioError
from tistudio.models.vae import load_vae
from tistudio.train.run import train
from tistudio.train.session import prepare

from ldm_layout import vae_to_ldm


def config(emb, data, root, **kw) -> TrainConfig:
    base = dict(embedding=str(emb), data=str(data), steps=2, width=64, height=64, save_every=0,
                preview_every=0, log_dir=str(root / "runs"), lr="0.05", template="subject_filewords",
                plot=False, output=str(root / "final.pt"))
    return TrainConfig(**{**base, **kw})


@pytest.fixture
def other_vae(tiny_models):
    """The tiny SD1 VAE with every weight changed: a stand-in for a fine-tuned VAE."""
    vae = copy.deepcopy(tiny_models["sd1"].vae)
    with torch.no_grad():
        for p in vae.parameters():
            p.mul_(0.9).add_(0.01)
    return vae


def test_vae_folder_replaces_the_models_vae_for_the_latents(tiny_models, dataset, tmp_path, other_vae):
    c = tiny_models["sd1"]
    other_vae.save_pretrained(tmp_path / "vae")
    emb = api.create_embedding(c, "tok", "cat", 1, tmp_path / "emb")
    own = c.vae
    s, _ = prepare(config(emb, dataset, tmp_path, vae=str(tmp_path / "vae"), latent_sampling="deterministic"),
                   components=c, progress=False)
    try:
        assert c.vae is own and s.c.vae is not own  # the caller's components keep their VAE
        pixels = s.cache.pixels(0).unsqueeze(0)
        with torch.no_grad():
            wanted = other_vae.encode(pixels).latent_dist.mean
            theirs = own.encode(pixels).latent_dist.mean
        got = s.cache.get([0], [False])
        assert torch.allclose(got, wanted, atol=1e-4) and not torch.allclose(got, theirs, atol=1e-2)
    finally:
        s.lock.release()


@pytest.mark.parametrize("prefixed", [True, False])
def test_vae_single_file_in_ldm_layout(tiny_models, tmp_path, other_vae, prefixed):
    state = vae_to_ldm(other_vae.state_dict(), other_vae.config)
    if not prefixed:
        state = {k.removeprefix("first_stage_model."): v for k, v in state.items()}
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "vae.safetensors"))
    loaded = load_vae(tmp_path / "vae.safetensors", tiny_models["sd1"].vae)
    theirs = other_vae.state_dict()
    assert all(torch.equal(v, theirs[k].view_as(v)) for k, v in loaded.state_dict().items())


def test_vae_file_in_diffusers_layout_and_errors(tiny_models, tmp_path, other_vae):
    save_file({k: v.contiguous() for k, v in other_vae.state_dict().items()}, str(tmp_path / "d.safetensors"))
    loaded = load_vae(tmp_path / "d.safetensors", tiny_models["sd1"].vae)
    assert torch.equal(loaded.encoder.conv_in.weight, other_vae.encoder.conv_in.weight)
    with pytest.raises(TIStudioError, match="--vae .*nope: no such file or folder"):
        load_vae(tmp_path / "nope", other_vae)
    (tmp_path / "empty").mkdir()
    with pytest.raises(TIStudioError, match="no config.json there"):
        load_vae(tmp_path / "empty", other_vae)
    half = {k: v for i, (k, v) in enumerate(other_vae.state_dict().items()) if i % 2}
    save_file({k: v.contiguous() for k, v in half.items()}, str(tmp_path / "half.safetensors"))
    with pytest.raises(TIStudioError, match="do not fit the model's VAE"):
        load_vae(tmp_path / "half.safetensors", other_vae)


@pytest.mark.parametrize("which, trained", [("l", 0), ("g", 1)])
def test_train_encoders_trains_only_one_encoders_vectors(tiny_models, dataset, tmp_path, which, trained):
    c = tiny_models["sdxl"]
    emb = api.create_embedding(c, "tok", "cat", 2, tmp_path / "emb")
    start = load_embedding(emb).vectors
    train(config(emb, dataset, tmp_path, train_encoders=which, recipe=RecipeConfig(norm="preserve")),
          components=c, progress=False)
    final = load_embedding(tmp_path / "final.pt").vectors
    assert len(final) == 2
    assert not torch.equal(final[trained], start[trained])
    assert torch.equal(final[1 - trained], start[1 - trained])


def test_train_encoders_needs_sdxl(tiny_models, dataset, tmp_path):
    c = tiny_models["sd1"]
    emb = api.create_embedding(c, "tok", "cat", 1, tmp_path / "emb")
    with pytest.raises(TIStudioError, match="--train-encoders l chooses one of SDXL's two text encoders; this "
                                            "model has 1: drop it"):
        prepare(config(emb, dataset, tmp_path, train_encoders="l"), components=c, progress=False)
    with pytest.raises(TIStudioError, match="--train-encoders x: use both|l|g"):
        TrainConfig(train_encoders="x")
