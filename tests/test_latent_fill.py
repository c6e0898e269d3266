"""Latents encoded as the first steps need them (data/latent_encode.LatentFill): the same bits as
caching every image up front, whatever order the steps ask in; step 1 waits for its own batch only;
Caching events count up with the steps; training and a resume mid-first-epoch end on the same
vectors as a run whose latents were all encoded before its first step."""
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from tistudio import api
from tistudio.config import ModelConfig, TrainConfig
from tistudio.data import latent_store
from tistudio.data.bucket_cache import BucketedCache
from tistudio.data.buckets import plan_buckets
from tistudio.data.dataset import ImageRecord
from tistudio.data.latent_cache import LatentCache
from tistudio.embedding.formats import load_embedding
from tistudio.events import Caching
from tistudio.train.loop import run_loop
from tistudio.train.run import train
from tistudio.train.session import prepare


class CountingVAE:
    """Latents [4, h/8, w/8]: pooled colours with a running sum along x (mirroring the image is not
    mirroring the latent); std 0.25. Records every call's batch size."""

    def __init__(self):
        self.calls: list[int] = []

    def __call__(self, pixels):
        self.calls.append(pixels.shape[0])
        pooled = torch.nn.functional.avg_pool2d(pixels, 8)
        mean = torch.cat([pooled, pooled.mean(1, keepdim=True)], 1).cumsum(-1)
        return mean, torch.full_like(mean, 0.25)


def images(folder: Path, sizes) -> list[ImageRecord]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, (w, h) in enumerate(sizes):
        img = Image.new("RGB", (w, h), (30 * i, 200 - 20 * i, 90))
        img.paste((255, 255, 255), (0, 0, w // 3 + 2 * i, h))  # asymmetric, so flips differ
        path = folder / f"{i:02d}.png"
        img.save(path)
        out.append(ImageRecord(path, f"img {i}"))
    return out


@pytest.mark.parametrize("mode", ["once", "deterministic", "random"])
def test_a_lazy_cache_holds_the_bits_of_an_eager_one(tmp_path, mode):
    records = images(tmp_path, [(32, 32)] * 5)
    kw = dict(width=32, height=32, mode=mode, flip=True, batch_size=2, seed=7, progress=False)
    eager = LatentCache.build(records, CountingVAE(), **kw)
    vae, events = CountingVAE(), []
    lazy = LatentCache.build(records, vae, callback=events.append, lazy=True, **kw)
    assert vae.calls == [] and lazy.fill.left == 10  # nothing encoded before a step asks
    got = lazy.get([3], [True], torch.Generator().manual_seed(1))
    # Only the chunk holding image 3 (images 2 and 3, with their mirrors: the chunk an eager build makes)
    assert vae.calls == [4] and lazy.fill.left == 6
    assert events[-1].done == 4 and events[-1].total == 10 and events[-1].seconds_per_image >= 0
    assert torch.equal(got, eager.get([3], [True], torch.Generator().manual_seed(1)))
    for i in (4, 0, 1, 2, 3):
        for flip in (False, True):
            assert torch.equal(lazy.get([i], [flip], torch.Generator().manual_seed(i)),
                               eager.get([i], [flip], torch.Generator().manual_seed(i)))
    assert vae.calls == [4, 2, 4] and lazy.fill.left == 0 and lazy.fill.encode is None  # encoder let go
    assert [(e.done, e.total) for e in events][-1] == (10, 10)
    assert torch.equal(lazy.mean, eager.mean)
    assert (lazy.std is None) == (eager.std is None) and (lazy.std is None or torch.equal(lazy.std, eager.std))


def test_whole_cache_reads_encode_what_is_left(tmp_path):
    records = images(tmp_path, [(32, 32)] * 3)
    vae = CountingVAE()
    lazy = LatentCache.build(records, vae, width=32, height=32, mode="deterministic", batch_size=1,
                             progress=False, lazy=True)
    assert lazy.latent_shape == (4, 4, 4) and vae.calls == [1]  # the shape needs one encode, no more
    assert lazy.weights([1], [False]) is None and vae.calls == [1]  # no weight map: no latents needed
    assert lazy.mean.shape == (3, 1, 4, 4, 4) and vae.calls == [1, 1, 1]


def test_buckets_and_augment_variants_fill_lazily_to_the_same_latents(tmp_path):
    records = images(tmp_path, [(64, 32), (32, 32), (64, 32), (32, 64), (32, 32)])
    placements = plan_buckets([r.path for r in records], 32, 32, enabled=True, step=8, min_side=16,
                              max_side=64, factor=8)
    kw = dict(width=32, height=32, placements=placements, factor=8, seed=3, mode="once", flip=True,
              augment=(2, True, (0.1, 0.1, 0.1, 0.02)), batch_size=2, progress=False)
    eager = BucketedCache.build(records, CountingVAE(), **kw)
    lazy = BucketedCache.build(records, CountingVAE(), lazy=True, **kw)
    assert len(lazy.parts) > 1 and lazy.left == 20  # 5 images x 2 variants x 2 views
    for i in reversed(range(len(lazy))):
        assert torch.equal(lazy.get([i], [i % 2 == 0]), eager.get([i], [i % 2 == 0]))
        assert torch.equal(lazy.size_ids([i], [True]), eager.size_ids([i], [True]))
    assert lazy.left == 0


def config(emb, data, root: Path, cache: str, **kw) -> TrainConfig:
    base = dict(embedding=str(emb), data=str(data), steps=4, width=64, height=64, save_every=2, preview_every=0,
                log_dir=str(root / "runs"), lr="0.02", template="none", flip=True, latent_sampling="random",
                augment_variants=2, random_crop=True, buckets=True, bucket_step=8, bucket_min=32, bucket_max=96,
                latent_cache=cache, plot=False, output=str(root / "out" / "final.pt"))
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture
def mixed_dataset(tmp_path):
    """Six pictures in two aspect ratios, so the run has two buckets."""
    folder = tmp_path / "data"
    images(folder, [(96, 64), (64, 64), (96, 64), (64, 64), (96, 64), (64, 64)])
    for p in folder.glob("*.png"):
        p.rename(p.with_name(f"{p.stem}-a cat.png"))
    return folder


def test_training_and_a_resume_mid_first_epoch_equal_caching_up_front(tiny_models, mixed_dataset, tmp_path,
                                                                      monkeypatch):
    """Every latent encoded before step 1 (forced here) against encoded as the steps need them, in RAM
    and in the disk store. Four steps at batch 1 cover 4 of the epoch's 12 items (6 images, 2 variants);
    the resumes start at step 2, the disk one reusing the slots its store's index marks filled."""
    c = tiny_models["sdxl"]
    emb = api.create_embedding(c, "tok", "cat", 1, tmp_path / "emb")
    build = BucketedCache.build.__func__
    with monkeypatch.context() as m:
        m.setattr(BucketedCache, "build", classmethod(lambda cls, *a, **k: build(cls, *a, **{**k, "lazy": False})))
        train(config(emb, mixed_dataset, tmp_path / "up-front", "memory"), components=c, progress=False)
    monkeypatch.setattr(latent_store, "SAVE_SECONDS", 0.0)  # the store's index after every encode
    up_front = load_embedding(tmp_path / "up-front" / "out" / "final.pt").vectors[0]
    for cache in ("memory", "disk"):
        train(config(emb, mixed_dataset, tmp_path / f"lazy-{cache}", cache), components=c, progress=False)
        assert torch.equal(load_embedding(tmp_path / f"lazy-{cache}" / "out" / "final.pt").vectors[0], up_front)
        half = tmp_path / f"resumed-{cache}"
        train(config(emb, mixed_dataset, half, cache, steps=2), components=c, progress=False)
        filled = stored_slots(half)
        train(config(emb, mixed_dataset, half, cache), components=c, progress=False, resume=str(half / "runs" / "tok"))
        assert torch.equal(load_embedding(half / "out" / "final.pt").vectors[0], up_front)
    assert 0 < filled < stored_slots(half) < 12  # the resume kept the first run's and added its own


def stored_slots(root: Path) -> int:
    """Slots the run's disk store marks filled, over all its buckets' indexes."""
    return sum(e["filled"] for index in (root / "runs" / "tok" / "latents").glob("latents-*.json")
               for e in json.loads(index.read_text())["entries"])


def test_the_first_step_waits_for_its_own_batch_only(tiny_models, dataset, tmp_path):
    c = tiny_models["sd1"]
    emb = api.create_embedding(c, "tok", "cat", 1, tmp_path / "emb")
    events = []
    cfg = config(emb, dataset, tmp_path, "memory", steps=1, augment_variants=1, random_crop=False, buckets=False)
    s, state = prepare(cfg, components=c, callback=events.append, progress=False)
    try:
        assert s.cache.left == 8  # 4 images and their mirrors, none encoded yet
        assert any("encoded as the first steps need them" in getattr(e, "text", "") for e in events)
        run_loop(s, state, progress=False)
        assert s.cache.left == 6  # step 1's image and its mirror
        cached = [e for e in events if isinstance(e, Caching)]
        assert (cached[-1].done, cached[-1].total) == (2, 8)
    finally:
        s.lock.release()


def test_validation_on_the_training_images_encodes_them_before_the_first_step(tiny_models, dataset, tmp_path):
    c = tiny_models["sd1"]
    emb = api.create_embedding(c, "tok", "cat", 1, tmp_path / "emb")
    cfg = config(emb, dataset, tmp_path, "memory", steps=2, val_every=1, augment_variants=1, random_crop=False,
                 buckets=False)
    s, state = prepare(cfg, components=c, progress=False)
    try:
        assert s.cache.left == 0
        assert run_loop(s, state, progress=False).step == 2
    finally:
        s.lock.release()


def test_a_run_that_loads_its_model_gives_the_vae_encoder_to_the_cache(tiny_models, tiny_model_dirs, dataset,
                                                                       tmp_path):
    """Owned (loaded from --model): the VAE keeps only its decoder and the cache lets the encoder go
    when every latent is in; the caller's model (passed in) keeps its encoder. Same vectors either way."""
    c = tiny_models["sd1"]
    emb = api.create_embedding(c, "tok", "cat", 1, tmp_path / "emb")
    kw = dict(steps=3, augment_variants=1, random_crop=False, buckets=False, preview_every=2)
    owned = config(emb, dataset, tmp_path / "owned", "memory", model=ModelConfig(str(tiny_model_dirs["sd1"])), **kw)
    s, state = prepare(owned, progress=False)
    try:
        assert s.c.vae.encoder is None and s.c.vae.quant_conv is None and s.c.vae.decoder is not None
        run_loop(s, state, progress=False)  # previews at step 2 decode without the encoder
        assert list((s.run.root / "images").glob("*.png"))
        s.cache.get(list(range(len(s.cache))), [False] * len(s.cache))  # the rest of the epoch
        assert s.cache.left == 0 and s.cache.parts[0].fill.encode is None
    finally:
        s.lock.release()
    borrowed = config(emb, dataset, tmp_path / "borrowed", "memory", **kw)
    train(borrowed, components=c, progress=False)
    assert c.vae.encoder is not None
    owned_run = config(emb, dataset, tmp_path / "owned-run", "memory", model=ModelConfig(str(tiny_model_dirs["sd1"])), **kw)
    train(owned_run)
    assert torch.equal(load_embedding(tmp_path / "owned-run" / "out" / "final.pt").vectors[0],
                       load_embedding(tmp_path / "borrowed" / "out" / "final.pt").vectors[0])


def test_a_run_that_never_decodes_keeps_no_vae_decoder(tiny_models, tiny_model_dirs, dataset, tmp_path):
    """Owned, with previews off and no scores: the decoder half goes too (nothing decodes), and the
    run trains the same vectors as with the caller's model, which keeps its whole VAE."""
    c = tiny_models["sd1"]
    emb = api.create_embedding(c, "tok", "cat", 1, tmp_path / "emb")
    kw = dict(steps=3, augment_variants=1, random_crop=False, buckets=False)
    check = config(emb, dataset, tmp_path / "check", "memory", model=ModelConfig(str(tiny_model_dirs["sd1"])), **kw)
    s, _ = prepare(check, progress=False)
    s.lock.release()
    assert s.c.vae.decoder is None and s.c.vae.post_quant_conv is None
    train(config(emb, dataset, tmp_path / "owned", "memory", model=ModelConfig(str(tiny_model_dirs["sd1"])), **kw),
          progress=False)
    train(config(emb, dataset, tmp_path / "borrowed", "memory", **kw), components=c, progress=False)
    assert c.vae.decoder is not None and c.vae.post_quant_conv is not None
    assert torch.equal(load_embedding(tmp_path / "owned" / "out" / "final.pt").vectors[0],
                       load_embedding(tmp_path / "borrowed" / "out" / "final.pt").vectors[0])


@pytest.mark.parametrize("options, decodes", [
    ({"preview_every": 0}, False),
    ({"preview_every": 500}, True),                                          # previews
    ({"preview_every": 0, "val_every": 5}, False),                           # a validation loss only
    ({"preview_every": 0, "val_every": 5, "eval_toy": "teal star"}, True),   # scores generate images
    ({"preview_every": 0, "method": "dreamartist"}, False),
    ({"preview_every": 0, "method": "dreamartist", "dreamartist": {"reconstruction": True}}, True),
])
def test_what_keeps_the_vae_decoder(options, decodes):
    from tistudio.config import from_dict
    from tistudio.train.session import decodes as run_decodes

    cfg = from_dict(TrainConfig, {"embedding": "e.pt", "data": "d", **options})
    assert run_decodes(cfg) is decodes
