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
from typing import Callable, Sequence

import torch
from tqdm import tqdm

from ..events import Callback, Caching
from ..memory import trim_heap
from ..rng import torch_generator
from .dataset import ImageRecord, load_image

# encode(pixels [B, 3, H, W] fp32 CPU in [-1, 1]) -> (mean, std), each [B, C, H/f, W/f], any device/dtype.
# B is up to `batch_size` images, doubled with `flip` (originals, then their mirrors).
EncodeFn = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
MODES = ("once", "deterministic", "random")


def vae_encoder(vae, device: torch.device, dtype: torch.dtype = torch.float32,
                channels_last: bool = False, take: bool = False) -> EncodeFn:
    """The EncodeFn of a diffusers AutoencoderKL, run in `dtype` and layout on `device`, with fused
    attention (SDPA) in its mid-block. It works on a copy of the encoder half (the VAE's own weights
    keep their precision and layout), or, with `take`, on the VAE's own encoder, which it takes out of
    the VAE (a run that owns its model: previews and scores only decode), so the encoder's memory goes
    when the EncodeFn does. The posterior's mean and std are taken in fp32 from the encoder's
    moments, as the VAE itself would."""
    # diffusers takes seconds to import; only a real VAE needs it (the cache's tests use fakes).
    from diffusers.models.attention_processor import AttnProcessor2_0
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

    layout = torch.channels_last if channels_last else torch.contiguous_format
    parts = [m if take else copy.deepcopy(m) for m in (vae.encoder, vae.quant_conv) if m is not None]
    if take:
        vae.encoder = vae.quant_conv = None
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
    UI's callback, at most one event a second (and the first and last always). The rate is of the seconds
    spent encoding, so it stays true when encoding is spread over the first steps (LatentFill)."""

    def __init__(self, total: int, progress: bool, callback: Callback | None):
        self.total, self.done, self.callback = total, 0, callback
        self.bar = tqdm(total=total, desc="caching latents", unit="img", disable=not progress, dynamic_ncols=True)
        self.last_event = float("-inf")  # the first update is always sent
        self.encoded = 0  # images (mirrors included) encoded here, not reused: they set the rate
        self.seconds = 0.0  # spent encoding them

    def update(self, images: int, seconds: float | None = None) -> None:
        """`images` done, encoded in `seconds`; None: reused from a store, not encoded."""
        self.done += images
        if seconds is not None:
            self.encoded += images
            self.seconds += seconds
        self.bar.update(images)
        now = time.perf_counter()
        if self.callback is not None and (now - self.last_event >= 1.0 or self.done == self.total):
            per_image = self.seconds / self.encoded if self.encoded else 0.0
            self.callback(Caching(self.done, self.total, per_image, per_image * (self.total - self.done)))
            self.last_event = now

    def close(self) -> None:
        self.bar.close()

    def __enter__(self) -> "CachingProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# arrays(shape, with_std) -> (values, std or None): where a fill keeps its latents, made when the
# first chunk tells their shape (in RAM here; a disk store's are memory-mapped files).
Arrays = Callable[[tuple[int, ...], bool], tuple[torch.Tensor, "torch.Tensor | None"]]


def in_memory(shape: tuple[int, ...], with_std: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    return torch.empty(shape), (torch.empty(shape) if with_std else None)


class LatentFill:
    """The [N, views, C, h, w] latents of every record, encoded chunk by chunk the first time one of
    a chunk's images is asked for (`ensure`), so training starts after its first batch's encode, not
    the whole dataset's. Chunks are fixed: records [k*batch_size, (k+1)*batch_size), whether they are
    asked for one by one or all at once (ensure_all: what caching up front is), so the numbers are the
    same bits whatever order the steps ask in. When the last chunk is in, the progress bar closes and the
    encoder is let go (with it the VAE encoder copy, vae_encoder). `check(records, latent_hw)` runs
    on the first chunk encoded (LatentCache's weight-map check). A disk store (latent_store.py) passes
    its `arrays`, the records `have` already holds (only the rest of their chunk is encoded) and
    `chunk(rows, last)`, called after each encode (it records them in its index)."""

    def __init__(self, records: Sequence[ImageRecord], encode: EncodeFn, *, width: int, height: int, mode: str,
                 flip: bool, seed: int, batch_size: int, bar: CachingProgress, check: Callable,
                 arrays: Arrays | None = None, have: Sequence[int] = (),
                 chunk: Callable[[Sequence[int], bool], None] | None = None):
        self.records, self.encode, self.bar, self.check = records, encode, bar, check
        self.options = dict(width=width, height=height, mode=mode, flip=flip, seed=seed)
        self.per_call, self.views = max(1, batch_size), 2 if flip else 1
        self.arrays, self.chunk = arrays or in_memory, chunk
        self.have = frozenset(have)  # records whose latents are in the arrays already (a disk store's)
        chunks = range(-(-len(records) // self.per_call))
        self.pending = {k for k in chunks if not set(self._chunk(k)) <= self.have}  # chunks not encoded yet
        self.values: torch.Tensor | None = None
        self.std: torch.Tensor | None = None

    @classmethod
    def filled(cls, records: Sequence[ImageRecord], values: torch.Tensor, std: torch.Tensor | None) -> "LatentFill":
        """One with nothing left to encode (a disk store's arrays)."""
        fill = cls(records, None, width=0, height=0, mode="", flip=False, seed=0, batch_size=1,
                   bar=None, check=None)
        fill.pending, fill.values, fill.std = set(), values, std
        return fill

    @property
    def left(self) -> int:
        """Images (mirrors included) not encoded yet."""
        return self.bar.total - self.bar.done if self.pending else 0

    def ensure(self, indices: Sequence[int]) -> None:
        """Encode the chunks holding these records, where not done yet."""
        for k in sorted({i // self.per_call for i in indices} & self.pending):
            self._encode(k)

    def ensure_all(self) -> None:
        self.ensure(range(len(self.records)))

    def _chunk(self, k: int) -> range:
        return range(k * self.per_call, min(len(self.records), (k + 1) * self.per_call))

    def _encode(self, k: int) -> None:
        todo = [i for i in self._chunk(k) if i not in self.have]
        began = time.perf_counter()
        # The loop keeps freed memory for the next step (train/speed.py heap reuse): left there, the
        # last step's kept activations and the encode's would be resident together (measured: +0.25 GB
        # step peak on SD1.5 at 512²). Handed back before and after, each peak is its own.
        trim_heap()
        values, std = encode_chunk([self.records[i] for i in todo], self.encode, **self.options)
        trim_heap()
        if self.values is None:  # the first chunk tells the latent shape
            self.check(self.records, values.shape[-2:])
            self.values, self.std = self.arrays((len(self.records), *values.shape[1:]), std is not None)
        rows = torch.as_tensor(todo)
        self.values[rows] = values
        if std is not None:
            self.std[rows] = std
        self.pending.discard(k)
        self.bar.update(len(todo) * self.views, time.perf_counter() - began)
        if not self.pending:
            self.bar.close()
            self.encode = None
        if self.chunk is not None:
            self.chunk(todo, not self.pending)
