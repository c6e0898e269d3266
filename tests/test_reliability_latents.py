"""The memory-mapped latent store (data/latent_store.py): latents live in a file, not in RAM; an
unchanged image is never re-encoded; a changed image (content, not just mtime) or VAE is; training on
it equals training on the in-RAM cache; 5,000 images stay out of anonymous memory (slow tier)."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tistudio import api
from tistudio.config import TrainConfig
from tistudio.data.dataset import ImageRecord
from tistudio.data.latent_cache import LatentCache
from tistudio.data.bucket_cache import BucketedCache
from tistudio.data import latent_store
from tistudio.data.latent_store import AUTO_DISK_BYTES, LatentStore, store_for, vae_fingerprint
from tistudio.embedding.formats import load_embedding
from tistudio.memory import status_field
from tistudio.train.run import train


class CountingVAE:
    """Latents [channels, 2, 2] from pooled pixels; counts the images it encodes."""

    def __init__(self, channels: int = 4, size: int = 2):
        self.channels, self.size, self.images = channels, size, 0

    def __call__(self, pixels):
        self.images += pixels.shape[0]
        pooled = torch.nn.functional.adaptive_avg_pool2d(pixels, self.size)
        mean = pooled.repeat(1, (self.channels + 2) // 3, 1, 1)[:, :self.channels]
        return mean, torch.full_like(mean, 0.1)


def make_images(folder: Path, n: int, size: int = 8) -> list[ImageRecord]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        path = folder / f"{i:05d}.png"
        Image.new("RGB", (size, size), (i % 256, (i * 7) % 256, (i * 13) % 256)).save(path)
        out.append(ImageRecord(path, f"img {i}"))
    return out


def build(records, vae, store, mode="deterministic", flip=False, seed=0):
    return LatentCache.build(records, vae, width=16, height=16, mode=mode, flip=flip, batch_size=3,
                             seed=seed, progress=False, store=store)


def mapped_files(tensor: torch.Tensor) -> list[str]:
    """Files whose mapping holds the tensor's memory (from /proc/self/maps)."""
    ptr = tensor.untyped_storage().data_ptr()
    found = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        parts = line.split()
        lo, hi = (int(x, 16) for x in parts[0].split("-"))
        if lo <= ptr < hi and len(parts) >= 6:
            found.append(parts[5])
    return found


def test_store_reuses_unchanged_images_and_reencodes_changed_ones(tmp_path):
    records = make_images(tmp_path / "data", 6)
    vae, folder = CountingVAE(), tmp_path / "latents"
    first = build(records, vae, LatentStore(folder, "vae-a"))
    assert vae.images == 6
    assert [f for f in mapped_files(first.mean) if f.endswith(".f32")]  # memory-mapped, not in RAM

    store = LatentStore(folder, "vae-a")
    again = build(records, vae, store)
    assert (vae.images, store.reused, store.encoded) == (6, 6, 0) and torch.equal(again.mean, first.mean)

    os.utime(records[1].path, ns=(1, 1))  # touched (or copied): same bytes, so still valid
    store = LatentStore(folder, "vae-a")
    build(records, vae, store)
    assert (store.reused, store.encoded) == (6, 0)

    Image.new("RGB", (8, 8), (255, 255, 255)).save(records[2].path)  # really changed
    store = LatentStore(folder, "vae-a")
    changed = build(records, vae, store)
    assert (store.reused, store.encoded, vae.images) == (5, 1, 7)
    assert not torch.equal(changed.mean[2], first.mean[2])
    assert torch.equal(torch.cat([changed.mean[:2], changed.mean[3:]]), torch.cat([first.mean[:2], first.mean[3:]]))

    store = LatentStore(folder, "vae-b")  # another VAE: nothing is shared
    build(records, vae, store)
    assert (store.reused, store.encoded) == (0, 6)

    store = LatentStore(folder, "vae-a")  # images removed and added: matched by path
    more = make_images(tmp_path / "more", 2)
    build(records[3:] + more, vae, store)
    assert (store.reused, store.encoded) == (3, 2)
    left = sorted(p.name for p in folder.iterdir())
    assert len([n for n in left if n.endswith(".json")]) == 2 and not [n for n in left if n.endswith(".tmp")]


def test_the_store_fills_lazily_to_the_bits_of_an_up_front_build(tmp_path):
    """Encoded as asked for, chunk by chunk (the chunks an up-front build makes); the index marks what
    is filled after the first encode and is complete with the last; a second build reuses it all."""
    records = make_images(tmp_path / "data", 7)
    kw = dict(width=16, height=16, mode="random", flip=True, batch_size=3, seed=0, progress=False)
    up_front = LatentCache.build(records, CountingVAE(), store=LatentStore(tmp_path / "a", "v"), **kw)
    vae, folder = CountingVAE(), tmp_path / "b"
    lazy = LatentCache.build(records, vae, store=LatentStore(folder, "v"), lazy=True, **kw)
    assert vae.images == 0 and not list(folder.glob("*.json"))
    lazy.get([4], [True], torch.Generator().manual_seed(0))
    assert vae.images == 6  # images 3-5 (the chunk holding 4) and their mirrors
    index = json.loads(next(folder.glob("latents-*.json")).read_text())
    assert [e["filled"] for e in index["entries"]] == [False] * 3 + [True] * 3 + [False]
    lazy.fill.ensure_all()
    assert torch.equal(lazy.fill.values, up_front.fill.values) and torch.equal(lazy.fill.std, up_front.fill.std)
    index = json.loads(next(folder.glob("latents-*.json")).read_text())
    assert all(e["filled"] and e["sha256"] for e in index["entries"])

    store = LatentStore(folder, "v")
    again = LatentCache.build(records, vae, store=store, lazy=True, **kw)
    assert (store.reused, store.encoded, again.fill.left, vae.images) == (7, 0, 0, 14)
    assert torch.equal(again.mean, up_front.mean) and torch.equal(again.std, up_front.std)
    assert len(list(folder.glob("latents-*.f32"))) == 2  # values and std, nothing else


def test_a_fill_stopped_part_way_keeps_what_it_encoded(tmp_path, monkeypatch):
    """A run stopped (or killed) in its first epoch: its index names the slots it filled, which the
    next build (a resume) reuses; the rest are encoded to the same bits as an up-front build."""
    monkeypatch.setattr(latent_store, "SAVE_SECONDS", 0.0)  # the index after every encode
    records = make_images(tmp_path / "data", 7)
    kw = dict(width=16, height=16, mode="once", flip=False, batch_size=3, seed=5, progress=False)
    up_front = LatentCache.build(records, CountingVAE(), store=LatentStore(tmp_path / "a", "v"), **kw)
    folder = tmp_path / "b"
    stopped = LatentCache.build(records, CountingVAE(), store=LatentStore(folder, "v"), lazy=True, **kw)
    stopped.get([0], [False])
    stopped.get([6], [False])  # chunks 0 (images 0-2) and 2 (image 6); then the run stops
    store, vae = LatentStore(folder, "v"), CountingVAE()
    resumed = LatentCache.build(records, vae, store=store, lazy=True, **kw)
    assert (store.reused, store.encoded, resumed.fill.left) == (4, 3, 3)
    assert torch.equal(resumed.mean, up_front.mean) and vae.images == 3
    assert len(list(folder.glob("latents-*.f32"))) == 1  # the stopped build's arrays are gone


def test_vae_fingerprint_follows_the_weights(tiny_models):
    import copy

    vae = tiny_models["sd1"].vae
    other = copy.deepcopy(vae)
    assert vae_fingerprint(vae) == vae_fingerprint(other)
    with torch.no_grad():
        next(other.parameters()).add_(0.01)
    assert vae_fingerprint(vae) != vae_fingerprint(other)


@pytest.mark.parametrize("mode, flip", [("once", True), ("random", False)])
def test_once_samples_do_not_depend_on_what_else_was_encoded(tmp_path, mode, flip):
    records = make_images(tmp_path / "data", 5)
    full = build(records, CountingVAE(), LatentStore(tmp_path / "a", "v"), mode=mode, flip=flip, seed=4)
    store = LatentStore(tmp_path / "b", "v")
    build(records[:2], CountingVAE(), store, mode=mode, flip=flip, seed=4)
    grown = build(records, CountingVAE(), store, mode=mode, flip=flip, seed=4)
    assert store.reused == 2 and torch.equal(grown.mean, full.mean)
    assert (grown.std is None) == (mode != "random")
    if mode == "once":
        assert not torch.equal(build(records, CountingVAE(), LatentStore(tmp_path / "c", "v"), mode=mode,
                                     flip=flip, seed=5).mean, full.mean)


def test_a_damaged_index_is_rebuilt_not_trusted(tmp_path):
    records = make_images(tmp_path / "data", 3)
    folder = tmp_path / "latents"
    first = build(records, CountingVAE(), LatentStore(folder, "v"))
    for index in folder.glob("*.json"):
        index.write_text('{"shape": [3, 1, 4, 2, 2], "arrays": ["nope.f32"], "entries": []}')
    store = LatentStore(folder, "v")
    assert torch.equal(build(records, CountingVAE(), store).mean, first.mean) and store.encoded == 3


def test_auto_picks_disk_from_the_latents_bytes(tiny_models, tmp_path):
    """`auto` weighs the bytes the cache will hold (BucketedCache.latent_bytes: variants, mirrors and
    bucket sizes counted; tests/test_buckets.py checks that count against a built cache)."""
    vae = tiny_models["sd1"].vae
    assert store_for("auto", AUTO_DISK_BYTES - 1, tmp_path, vae) is None
    assert store_for("auto", AUTO_DISK_BYTES, tmp_path, vae) is not None
    assert store_for("disk", 1, tmp_path, vae) is not None
    assert store_for("memory", 10 * AUTO_DISK_BYTES, tmp_path, vae) is None
    sd1 = BucketedCache.latent_bytes(1000, None, width=512, height=512, channels=4)
    assert sd1 == 1000 * 4 * 64 * 64 * 4 < AUTO_DISK_BYTES  # a thousand SD 1.x images stay in RAM
    assert BucketedCache.latent_bytes(1000, None, width=512, height=512, channels=4, flip=True) >= AUTO_DISK_BYTES
    xl = BucketedCache.latent_bytes(256, None, width=1024, height=1024, channels=4)
    assert xl == AUTO_DISK_BYTES  # 256 SDXL latents at 1024x1024 weigh as much as 1,024 SD 1.x ones


def test_training_on_the_disk_cache_equals_the_ram_cache(tiny_models, dataset, tmp_path):
    c = tiny_models["sd1"]
    emb = api.create_embedding(c, "tok", "cat", 1, tmp_path / "emb")
    outs = {}
    for cache in ("memory", "disk"):
        cfg = TrainConfig(embedding=str(emb), data=str(dataset), steps=3, width=64, height=64, save_every=0,
                          preview_every=0, log_dir=str(tmp_path / cache / "runs"), lr="0.01", template="none",
                          latent_sampling="deterministic", flip=True, latent_cache=cache, plot=False,
                          output=str(tmp_path / cache / "final.pt"))
        train(cfg, components=c, progress=False)
        outs[cache] = load_embedding(tmp_path / cache / "final.pt").vectors[0]
    assert torch.equal(outs["memory"], outs["disk"])
    assert list((tmp_path / "disk" / "runs" / "tok" / "latents").glob("latents-*.f32"))
    assert not (tmp_path / "memory" / "runs" / "tok" / "latents").exists()


def rss_anon_mib() -> float:
    kib = status_field("RssAnon")
    return int(kib) / 1024 if kib is not None else float("nan")


@pytest.mark.slow
def test_five_thousand_images_cache_on_disk_not_in_ram(tmp_path):
    records = make_images(tmp_path / "data", 5000)
    vae = CountingVAE(channels=16, size=16)  # 16 KiB per latent: 80 MiB for the dataset
    before = rss_anon_mib()
    started = time.perf_counter()
    cache = build(records, vae, LatentStore(tmp_path / "latents", "v"))
    took = time.perf_counter() - started
    grown = rss_anon_mib() - before
    size = sum(p.stat().st_size for p in (tmp_path / "latents").glob("*.f32")) / 2**20
    print(f"\n5000 images: built in {took:.1f} s, {size:.0f} MiB on disk, anonymous RSS grew {grown:.1f} MiB")
    assert size >= 78 and grown < size / 4
    assert cache.get([4999], [False]).shape == (1, 16, 16, 16)

    os.utime(records[10].path, ns=(5, 5))
    Image.new("RGB", (8, 8), (1, 2, 3)).save(records[20].path)
    store = LatentStore(tmp_path / "latents", "v")
    started = time.perf_counter()
    build(records, vae, store)
    print(f"rebuild after 1 touch + 1 change: {time.perf_counter() - started:.1f} s, "
          f"{store.encoded} encoded, {store.reused} reused")
    assert (store.encoded, store.reused) == (1, 4999)
    assert np.isfinite(cache.mean[:100].numpy()).all()
