"""One latent-encoding path and per-item draws (tistudio.rng): the in-memory cache and the disk
store hold the same latents for the same images and seed, and an optimizer batch of B trains exactly
like B accumulated micro-batches of 1, in every --latent-sampling mode, with and without --flip."""
from __future__ import annotations

import pytest
import torch

from tistudio import api
from tistudio.config import TrainConfig
from tistudio.data.dataset import make_records, scan_images
from tistudio.data.latent_cache import LatentCache
from tistudio.data.latent_store import LatentStore
from tistudio.embedding.formats import load_embedding
from tistudio.rng import python_random, seed_for, torch_generator
from tistudio.train.run import train

MODES = ["once", "deterministic", "random"]
CASES = [(mode, flip) for mode in MODES for flip in (False, True)]


def vae_encoder(vae):
    def encode(pixels):
        dist = vae.encode(pixels).latent_dist
        return dist.mean, dist.std
    return encode


def tiny_records(dataset):
    images, _ = scan_images(dataset)
    return make_records(images, width=64, height=64)


@pytest.mark.parametrize("mode, flip", CASES)
def test_memory_and_disk_caches_hold_the_same_latents(tiny_models, dataset, tmp_path, mode, flip):
    records, encode = tiny_records(dataset), vae_encoder(tiny_models["sd1"].vae)
    common = dict(width=64, height=64, mode=mode, flip=flip, seed=3, progress=False)
    memory = LatentCache.build(records, encode, batch_size=2, **common)
    disk = LatentCache.build(records, encode, batch_size=2, store=LatentStore(tmp_path / "latents", "v"), **common)
    assert torch.equal(memory.mean, disk.mean)
    assert (memory.std is None) == (disk.std is None) == (mode != "random")
    if mode == "random":
        assert torch.equal(memory.std, disk.std)


@pytest.mark.parametrize("flip", [False, True])
def test_once_samples_do_not_depend_on_the_encoder_batch(tiny_models, dataset, flip):
    records, encode = tiny_records(dataset), vae_encoder(tiny_models["sd1"].vae)
    caches = [LatentCache.build(records, encode, width=64, height=64, mode="once", flip=flip, seed=3,
                                batch_size=b, progress=False) for b in (1, 3)]
    assert torch.allclose(caches[0].mean, caches[1].mean, atol=1e-5)  # the VAE's own batching noise only
    means = LatentCache.build(records, encode, width=64, height=64, mode="deterministic", flip=flip,
                              progress=False).mean
    assert (caches[0].mean - means).abs().max() > 1e-3  # a sample was drawn, not the mean


def trained(c, emb, dataset, root, **kw) -> torch.Tensor:
    """The final vectors of a 2-step run that draws everything: prompts, tags, flips, latents."""
    cfg = TrainConfig(embedding=str(emb), data=str(dataset), steps=2, width=64, height=64, save_every=0,
                      preview_every=0, log_dir=str(root / "runs"), lr="0.02", template="subject_filewords",
                      shuffle_tags=True, tag_dropout=0.3, plot=False, output=str(root / "final.pt"), **kw)
    train(cfg, components=c, progress=False)
    return load_embedding(root / "final.pt").vectors[0]


@pytest.mark.parametrize("mode, flip", CASES)
def test_a_batch_of_two_trains_like_two_accumulated_batches_of_one(tiny_models, dataset, tmp_path, mode, flip):
    c = tiny_models["sd1"]
    emb = api.create_embedding(c, "tok", "cat", 2, tmp_path / "emb")
    a = trained(c, emb, dataset, tmp_path / "batch", latent_sampling=mode, flip=flip, batch_size=2, grad_accum=1)
    b = trained(c, emb, dataset, tmp_path / "accum", latent_sampling=mode, flip=flip, batch_size=1, grad_accum=2)
    assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()


@pytest.mark.parametrize("mode, flip", CASES)
def test_training_on_memory_and_disk_caches_is_identical(tiny_models, dataset, tmp_path, mode, flip):
    c = tiny_models["sd1"]
    emb = api.create_embedding(c, "tok", "cat", 2, tmp_path / "emb")
    a = trained(c, emb, dataset, tmp_path / "memory", latent_sampling=mode, flip=flip, latent_cache="memory")
    b = trained(c, emb, dataset, tmp_path / "disk", latent_sampling=mode, flip=flip, latent_cache="disk")
    assert torch.equal(a, b), (a - b).abs().max()


def test_rng_keys_name_independent_reproducible_draws():
    assert seed_for(1, "sample", 5) == seed_for(1, "sample", 5) < 2**63
    assert len({seed_for(1, "sample", 5), seed_for(2, "sample", 5), seed_for(1, "prompt", 5),
                seed_for(1, "sample", 6), seed_for(1, "sample", 5, 0)}) == 5
    a = torch.randn(4, generator=torch_generator(0, "x", "cat.png"))
    assert torch.equal(a, torch.randn(4, generator=torch_generator(0, "x", "cat.png")))
    assert python_random(0, "order", 1).random() == python_random(0, "order", 1).random()


def test_the_vae_encoder_matches_the_vae_and_leaves_it_alone(tiny_models):
    from tistudio.data.latent_encode import vae_encoder

    vae = tiny_models["sd1"].vae
    before = {k: v.clone() for k, v in vae.state_dict().items()}
    pixels = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        dist = vae.encode(pixels).latent_dist
    mean, std = vae_encoder(vae, torch.device("cpu"))(pixels)
    assert torch.equal(mean, dist.mean) and torch.equal(std, dist.std)
    nhwc = vae_encoder(vae, torch.device("cpu"), channels_last=True)(pixels)[0]
    assert torch.allclose(nhwc, dist.mean, atol=1e-5)
    half, half_std = vae_encoder(vae, torch.device("cpu"), torch.bfloat16, channels_last=True)(pixels)
    assert half.dtype == half_std.dtype == torch.float32  # the posterior is taken in fp32
    assert torch.allclose(half, dist.mean, atol=0.05)
    after = vae.state_dict()
    assert vae.dtype == torch.float32 and all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.is_contiguous() for p in vae.parameters())
