"""Crop and colour jitter as cached variants (data/augment.py): variants are pure functions of
(seed, image), each is encoded exactly, each sample's variant is a pure function of its place in the
sample stream, the disk store tells variants apart, and no augmentation changes nothing."""
from __future__ import annotations

from collections import Counter

import pytest
import torch
from PIL import Image

from tistudio import api
from tistudio.config import TrainConfig, color_jitter
from tistudio.data.augment import Augment, pick, variants
from tistudio.data.dataset import ImageRecord, load_image
from tistudio.data.latent_cache import LatentCache
from tistudio.data.latent_encode import image_key
from tistudio.data.latent_store import LatentStore
from tistudio.errors import TIStudioError
from tistudio.train.run import train
from tistudio.train.session import prepare


def test_variants_are_pure_and_only_what_was_asked_for():
    assert variants("a.png|0", 1, 4, False, (0, 0, 0, 0)) == [Augment()]
    crops = variants("a.png|0", 1, 4, True, (0, 0, 0, 0))
    assert crops == variants("a.png|0", 1, 4, True, (0, 0, 0, 0)) != variants("b.png|0", 1, 4, True, (0, 0, 0, 0))
    assert len(set(crops)) == 4 and all(0 <= x <= 1 for a in crops for x in a.centering)
    assert all((a.brightness, a.contrast, a.saturation, a.hue) == (1, 1, 1, 0) for a in crops)
    colours = variants("a.png|0", 1, 3, False, (0.2, 0.1, 0.3, 0.05))
    assert all(a.centering == (0.5, 0.5) for a in colours)
    assert all(0.8 <= a.brightness <= 1.2 and 0.9 <= a.contrast <= 1.1 and 0.7 <= a.saturation <= 1.3
               and abs(a.hue) <= 0.05 for a in colours)
    assert Augment().key == "" and colours[0].key.startswith("aug:")


def test_plain_records_keep_their_cache_keys(tmp_path):
    record = ImageRecord(tmp_path / "cat.png", "")
    assert image_key(record) == "cat.png|0"  # the `once` draws of every existing cache stay valid
    assert image_key(ImageRecord(tmp_path / "cat.png", "", augment=Augment(hue=0.1))).startswith("cat.png|0|aug:")


def test_colour_and_crop_change_the_pixels(tmp_path):
    path = tmp_path / "grad.png"
    img = Image.new("RGB", (96, 64))
    img.putdata([(x * 2, 100, 255 - x * 2) for _ in range(64) for x in range(96)])
    img.save(path)
    plain = load_image(path, 64, 64)
    assert torch.equal(plain, load_image(path, 64, 64, augment=Augment()))
    left = load_image(path, 64, 64, augment=Augment(centering=(0.0, 0.5)))
    right = load_image(path, 64, 64, augment=Augment(centering=(1.0, 0.5)))
    assert left[0].mean() < plain[0].mean() < right[0].mean()  # red grows to the right
    brighter = load_image(path, 64, 64, augment=Augment(brightness=1.3))
    assert brighter.mean() > plain.mean()
    assert not torch.allclose(load_image(path, 64, 64, augment=Augment(hue=0.25)), plain, atol=0.1)


def test_color_jitter_option_is_checked():
    assert color_jitter("") == (0, 0, 0, 0) and color_jitter("0.1,0.2") == (0.1, 0.2, 0, 0)
    for bad in ("1.5", "a,b", "0.1,0.1,0.1,0.6", "0.1,0.1,0.1,0.1,0.1"):
        with pytest.raises(TIStudioError, match="--color-jitter"):
            TrainConfig(color_jitter=bad)
    with pytest.raises(TIStudioError, match="--augment-variants 0"):
        TrainConfig(augment_variants=0)


def test_each_sample_picks_a_variant_by_its_position():
    picks = [pick(3, position, 4) for position in range(400)]
    assert picks == [pick(3, position, 4) for position in range(400)]
    assert set(Counter(picks)) == {0, 1, 2, 3} and pick(3, 7, 1) == 0


def test_the_store_keeps_variants_apart_and_reuses_them(tiny_models, dataset, tmp_path):
    vae = tiny_models["sd1"].vae

    def encode(pixels):
        dist = vae.encode(pixels).latent_dist
        return dist.mean, dist.std

    path = sorted(dataset.glob("*.png"))[0]
    records = [ImageRecord(path, "", augment=a) for a in variants("x", 0, 3, True, (0.2, 0, 0, 0))]
    store = LatentStore(tmp_path / "latents", "v")
    first = LatentCache.build(records, encode, width=32, height=32, mode="deterministic", store=store, progress=False)
    assert store.encoded == 3
    again = LatentCache.build(records, encode, width=32, height=32, mode="deterministic", store=store,
                              progress=False)
    assert store.reused == 3 and torch.equal(first.mean, again.mean)
    assert not torch.equal(first.mean[0], first.mean[1])
    with torch.no_grad():
        wanted = vae.encode(load_image(path, 32, 32, augment=records[1].augment)[None]).latent_dist.mean
    assert torch.allclose(first.mean[1, 0], wanted[0], atol=1e-5)


def test_training_with_random_crop_and_colour_jitter(tiny_models, tmp_path):
    c = tiny_models["sdxl"]
    data = tmp_path / "wide"
    data.mkdir()
    for k in range(3):
        Image.new("RGB", (96, 64), (60 * k, 90, 200 - 50 * k)).save(data / f"{k}.png")
    emb = api.create_embedding(c, "tok", "cat", 1, tmp_path / "emb")
    cfg = TrainConfig(embedding=str(emb), data=str(data), steps=2, width=64, height=64, save_every=0,
                      preview_every=0, log_dir=str(tmp_path / "runs"), plot=False, output=str(tmp_path / "f.pt"),
                      random_crop=True, color_jitter="0.1,0.1,0.1,0.02", augment_variants=2, buckets=True)
    s, _ = prepare(cfg, components=c, progress=False)
    try:
        assert len(s.cache) == 6 and len(s.cache.images) == 3  # 3 images x 2 variants
        assert [r.path for r in s.cache.images] == [r.path for r in s.cache.records[::2]]
        ids = [s.cache.size_ids([i], [False])[0].tolist() for i in range(6)]
        # 3:2 pictures in the one 64x64 bucket: the crop moves within the 32 px the width leaves,
        # and SDXL is told where (original 64x96, crop (0, left), target 64x64)
        assert len({row[3] for row in ids}) > 1 and all(0 <= row[3] <= 32 for row in ids)
        assert all(row[:3] == [64, 96, 0] and row[4:] == [64, 64] for row in ids)
        assert not torch.equal(s.cache.get([0], [False]), s.cache.get([1], [False]))
    finally:
        s.lock.release()
    result = train(cfg, components=c, progress=False)
    assert result.step == 2
