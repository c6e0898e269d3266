"""The latent cache with a fake encoder: modes, exact flips, batching, weights, pixels."""
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from tistudio.data.dataset import ImageRecord, load_image
from tistudio.data.latent_cache import LatentCache
from tistudio.errors import TIStudioError

W, H = 32, 16  # non-square on purpose: latents are [4, 2, 4]


class FakeVAE:
    """mean: pooled colours plus a running sum along x, so mirroring the image is NOT the same as
    mirroring its latent (like a real VAE); std: a constant 0.5."""

    def __init__(self):
        self.seen: list[torch.Tensor] = []

    def __call__(self, pixels: torch.Tensor):
        assert pixels.dtype == torch.float32 and pixels.device.type == "cpu"
        assert pixels.min() >= -1 and pixels.max() <= 1
        self.seen.append(pixels)
        pooled = F.avg_pool2d(pixels, 8)
        mean = torch.cat([pooled, pooled.mean(1, keepdim=True)], 1).cumsum(-1)
        return mean.double(), torch.full_like(mean, 0.5).double()  # any dtype is accepted


def records(tmp_path: Path, n: int = 3) -> list[ImageRecord]:
    out = []
    for i in range(n):
        img = Image.new("RGB", (W, H), (40 * i, 0, 0))
        img.paste((255, 255, 255), (0, 0, 8 + 4 * i, H))  # asymmetric: white on the left
        path = tmp_path / f"{i}.png"
        img.save(path)
        out.append(ImageRecord(path, f"img {i}"))
    return out


def expected_mean(path: Path, flip: bool = False) -> torch.Tensor:
    pixels = load_image(path, W, H)
    mean, _ = FakeVAE()((pixels.flip(-1) if flip else pixels)[None])
    return mean[0].float()


def build(tmp_path, mode, flip=False, batch_size=2, seed=0, n=3, vae=None):
    return LatentCache.build(records(tmp_path, n), vae or FakeVAE(), width=W, height=H, mode=mode,
                             flip=flip, batch_size=batch_size, seed=seed, progress=False)


def test_deterministic_mode_returns_the_mean_and_flips_are_exact(tmp_path: Path):
    vae = FakeVAE()
    cache = build(tmp_path, "deterministic", flip=True, vae=vae)
    assert len(cache) == 3 and cache.latent_shape == (4, 2, 4) and cache.std is None
    # Each image and its mirror encoded exactly once, in batches of batch_size images.
    assert [p.shape[0] for p in vae.seen] == [4, 2]
    got = cache.get([2, 0, 2], [False, True, True])
    assert got.shape == (3, 4, 2, 4) and got.dtype == torch.float32
    assert torch.allclose(got[0], expected_mean(tmp_path / "2.png"))
    assert torch.allclose(got[1], expected_mean(tmp_path / "0.png", flip=True))
    assert torch.allclose(got[2], expected_mean(tmp_path / "2.png", flip=True))
    assert not torch.allclose(got[2], got[0].flip(-1))  # not an approximate flip of the latent
    assert torch.equal(cache.get([1], [False]), cache.get([1], [False]))


def test_once_mode_draws_one_sample_at_build_time(tmp_path: Path):
    cache = build(tmp_path, "once", seed=1)
    first = cache.get([0, 1, 2], [False] * 3, torch.Generator().manual_seed(9))
    assert torch.equal(first, cache.get([0, 1, 2], [False] * 3))
    mean = torch.stack([expected_mean(tmp_path / f"{i}.png") for i in range(3)])
    noise = (first - mean) / 0.5
    assert noise.abs().max() > 0.1 and abs(noise.std().item() - 1) < 0.5
    assert torch.equal(build(tmp_path, "once", seed=1).get([0], [False]), first[:1])
    assert not torch.equal(build(tmp_path, "once", seed=2).get([0], [False]), first[:1])


def test_random_mode_draws_fresh_noise_per_call(tmp_path: Path):
    cache = build(tmp_path, "random", batch_size=1)
    g = torch.Generator().manual_seed(3)
    a, b = cache.get([1], [False], g), cache.get([1], [False], g)
    assert not torch.equal(a, b)
    assert torch.equal(a, cache.get([1], [False], torch.Generator().manual_seed(3)))
    many = cache.get([1] * 4000, [False] * 4000, g)
    assert torch.allclose(many.mean(0), expected_mean(tmp_path / "1.png"), atol=0.05)
    assert abs(many.std(0).mean().item() - 0.5) < 0.02


def test_flip_without_flip_cache_and_unknown_mode_are_refused(tmp_path: Path):
    cache = build(tmp_path, "deterministic")
    with pytest.raises(ValueError, match="flip=False"):
        cache.get([0], [True])
    with pytest.raises(TIStudioError, match="--latent-sampling"):
        build(tmp_path, "sometimes")


def test_weights_follow_the_flip_and_default_to_one(tmp_path: Path):
    recs = records(tmp_path, 2)
    weight = torch.arange(8.0).view(1, 2, 4)
    recs[1] = ImageRecord(recs[1].path, recs[1].caption, weight)
    cache = LatentCache.build(recs, FakeVAE(), width=W, height=H, flip=True, progress=False)
    assert cache.weights([0], [False]) is None
    w = cache.weights([0, 1, 1], [False, False, True])
    assert w.shape == (3, 1, 2, 4)
    assert torch.equal(w[0], torch.ones(1, 2, 4))
    assert torch.equal(w[1], weight) and torch.equal(w[2], weight.flip(-1))


def test_weight_map_of_the_wrong_size_is_refused(tmp_path: Path):
    recs = records(tmp_path, 1)
    recs[0] = ImageRecord(recs[0].path, "", torch.ones(1, 4, 2))  # transposed, as A1111 made them
    with pytest.raises(TIStudioError, match="weight map"):
        LatentCache.build(recs, FakeVAE(), width=W, height=H, progress=False)


def test_pixels_are_reloaded_from_disk(tmp_path: Path):
    cache = build(tmp_path, "deterministic", flip=True)
    assert torch.equal(cache.pixels(1), load_image(tmp_path / "1.png", W, H))
    assert torch.equal(cache.pixels(1, flip=True), load_image(tmp_path / "1.png", W, H).flip(-1))


def test_progress_bar_reports_images(tmp_path: Path, capsys):
    LatentCache.build(records(tmp_path, 2), FakeVAE(), width=W, height=H, flip=True, progress=True)
    assert "caching latents" in capsys.readouterr().err


def test_caching_reports_progress_events_with_an_eta(tmp_path: Path):
    from tistudio.events import Caching

    events = []
    LatentCache.build(records(tmp_path, 3), FakeVAE(), width=W, height=H, flip=True, batch_size=1,
                      progress=False, callback=events.append)
    assert events and all(isinstance(e, Caching) and e.total == 6 for e in events)
    assert events[-1].done == 6 and events[-1].eta_seconds == 0.0 and events[-1].seconds_per_image >= 0
