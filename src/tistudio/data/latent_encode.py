"""The one path from training images to latents, shared by the in-memory cache (latent_cache.py)
and the disk store (latent_store.py), so both hold the same numbers for the same images and seed.

Images are loaded, mirrored when `flip` asks for it, and encoded `batch_size` images per call (the
encoder's batch, chosen for speed: it never changes a result's meaning, and training's own batch
size plays no part). In `once` mode each image's sample is drawn from its own generator, keyed by
(seed, the image's file name and greyscale flag, the view), so the sample does not depend on the
order of encoding, the batch, or which other images were cached already (rng.py).
"""
from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
from tqdm import tqdm

from ..events import Callback, Caching
from ..rng import torch_generator
from .dataset import ImageRecord, load_image

# encode(pixels [B, 3, H, W] fp32 CPU in [-1, 1]) -> (mean, std), each [B, C, H/f, W/f], any device/dtype.
# B is up to `batch_size` images, doubled with `flip` (originals, then their mirrors).
EncodeFn = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
MODES = ("once", "deterministic", "random")


def vae_encoder(vae, device: torch.device, dtype: torch.dtype = torch.float32,
                channels_last: bool = False) -> EncodeFn:
    """The EncodeFn of a diffusers AutoencoderKL, run in `dtype` and layout on `device`, with fused
    attention (SDPA) in its mid-block. It works on a copy of the encoder half (the VAE's own weights,
    used for previews, keep their precision and layout); the posterior's mean and std are taken in
    fp32 from the encoder's moments, as the VAE itself would."""
    # diffusers takes seconds to import; only a real VAE needs it (the cache's tests use fakes).
    from diffusers.models.attention_processor import AttnProcessor2_0
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

    layout = torch.channels_last if channels_last else torch.contiguous_format
    parts = [copy.deepcopy(m) for m in (vae.encoder, vae.quant_conv) if m is not None]
    for m in parts:
        m.to(device=device, dtype=dtype, memory_format=layout).eval().requires_grad_(False)
        for module in m.modules():
            if hasattr(module, "set_processor"):  # diffusers Attention (the VAE mid-block's)
                module.set_processor(AttnProcessor2_0())

    def encode(pixels: torch.Tensor):
        h = pixels.to(device, dtype).contiguous(memory_format=layout)
        for m in parts:
            h = m(h)
        dist = DiagonalGaussianDistribution(h.float())
        return dist.mean, dist.std
    return encode


def image_key(record: ImageRecord) -> str:
    """What a `once` sample is keyed by: the file name (a dataset folder is flat, so names are
    unique; moving the folder keeps the samples), whether it is the greyscale copy, and its
    augmentation variant (data/augment.py; none adds nothing, so plain keys never changed)."""
    key = f"{Path(record.path).name}|{int(record.grayscale)}"
    return f"{key}|{record.augment.key}" if record.augment.key else key


def encode_chunk(chunk: Sequence[ImageRecord], encode: EncodeFn, *, width: int, height: int, mode: str,
                 flip: bool, seed: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(values, std) of `chunk`, each [b, views, C, h, w] fp32 CPU (views: the image, then its mirror).
    values: the drawn sample (`once`) or the posterior mean; std only in `random` mode, else None."""
    pixels = torch.stack([load_image(r.path, width, height, r.grayscale, r.augment) for r in chunk])
    if flip:  # [b, 3, H, W] -> [2b, 3, H, W]: originals then their mirrors
        pixels = torch.cat([pixels, pixels.flip(-1)])
    with torch.no_grad():
        mean, std = encode(pixels)
    views = 2 if flip else 1
    # [views*b, C, h, w] -> [b, views, C, h, w]
    mean, std = (x.detach().float().cpu().view(views, len(chunk), *x.shape[1:]).transpose(0, 1).contiguous()
                 for x in (mean, std))
    if mode == "once":
        noise = torch.stack([torch.stack([torch.randn(mean.shape[2:], generator=torch_generator(
            seed, "latent-once", image_key(r), view)) for view in range(views)]) for r in chunk])
        return mean + std * noise, None
    return mean, (std if mode == "random" else None)


class CachingProgress:
    """The caching progress bar (tqdm: rate and ETA) and the same figures as Caching events for a
    UI's callback, at most one event a second (and the last one always)."""

    def __init__(self, total: int, progress: bool, callback: Callback | None):
        self.total, self.done, self.callback = total, 0, callback
        self.bar = tqdm(total=total, desc="caching latents", unit="img", disable=not progress, dynamic_ncols=True)
        self.started = self.last_event = time.perf_counter()
        self.encoded = 0  # images (mirrors included) encoded here, not reused: they set the rate

    def update(self, images: int, encoded: bool = True) -> None:
        self.done += images
        self.encoded += images if encoded else 0
        self.bar.update(images)
        now = time.perf_counter()
        if self.callback is not None and (now - self.last_event >= 1.0 or self.done == self.total):
            per_image = (now - self.started) / self.encoded if self.encoded else 0.0
            self.callback(Caching(self.done, self.total, per_image, per_image * (self.total - self.done)))
            self.last_event = now

    def close(self) -> None:
        self.bar.close()

    def __enter__(self) -> "CachingProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def encode_all(records: Sequence[ImageRecord], which: Sequence[int], encode: EncodeFn, *, width: int,
               height: int, mode: str, flip: bool, seed: int, batch_size: int,
               bar: CachingProgress) -> Iterator[tuple[list[int], torch.Tensor, torch.Tensor | None]]:
    """(indices, values, std) for the records at `which`, `batch_size` images per encoder call."""
    views, per_call = (2 if flip else 1), max(1, batch_size)
    for start in range(0, len(which), per_call):
        chunk = list(which[start:start + per_call])
        values, std = encode_chunk([records[i] for i in chunk], encode, width=width, height=height,
                                   mode=mode, flip=flip, seed=seed)
        bar.update(len(chunk) * views)
        yield chunk, values, std
