"""VAE latents for every training image, encoded once before training so the VAE never runs per step
(and can then be offloaded). Held on the CPU in fp32; the loop moves each batch to its device.

Modes (REFERENCE.md §2 "Latent sampling"): `once` keeps one posterior sample drawn at build time,
`deterministic` the posterior mean, `random` mean and std for a fresh sample on every `get`. Only
what the mode needs is kept. With `flip`, the mirrored image is encoded too, so a flipped sample is
the true latent of the mirrored picture rather than a mirrored latent (the VAE is not equivariant).
Latents are unscaled: the caller applies the VAE's scaling factor.

With a `store` (data/latent_store.py) the latents live in a memory-mapped file instead of RAM, reused
by later runs and resumes until an image or the VAE changes; the interface is the same.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import torch

from ..errors import TIStudioError
from .dataset import ImageRecord, check_size, load_image

if TYPE_CHECKING:
    from .latent_store import LatentStore

# encode(pixels [B, 3, H, W] fp32 CPU in [-1, 1]) -> (mean, std), each [B, C, H/f, W/f], any device/dtype.
# B is `batch_size` images, doubled with `flip` (originals, then their mirrors).
EncodeFn = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
MODES = ("once", "deterministic", "random")


def encode_views(chunk: Sequence[ImageRecord], encode: EncodeFn, width: int, height: int,
                 flip: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) of `chunk`, each [b, views, C, h, w] fp32 CPU (views: the image, then its mirror)."""
    pixels = torch.stack([load_image(r.path, width, height, r.grayscale) for r in chunk])
    if flip:  # [b, 3, H, W] -> [2b, 3, H, W]: originals then their mirrors
        pixels = torch.cat([pixels, pixels.flip(-1)])
    mean, std = encode(pixels)
    views = 2 if flip else 1
    # [views*b, C, h, w] -> [b, views, C, h, w]
    return tuple(x.detach().float().cpu().view(views, len(chunk), *x.shape[1:]).transpose(0, 1)
                 for x in (mean, std))


@dataclass(frozen=True, eq=False)
class LatentCache:
    records: tuple[ImageRecord, ...]
    width: int
    height: int
    mode: str
    flip: bool
    # [N, V, C, h, w] with V = 2 when flip (index 1 = mirrored) else 1. `once`: the drawn sample in
    # `mean`, `std` None; `deterministic`: `std` None; `random`: both.
    mean: torch.Tensor
    std: torch.Tensor | None

    @classmethod
    def build(cls, records: Sequence[ImageRecord], encode: EncodeFn, *, width: int, height: int,
              mode: str = "once", flip: bool = False, batch_size: int = 1,
              generator: torch.Generator | None = None, progress: bool = True,
              store: "LatentStore | None" = None) -> "LatentCache":
        from tqdm import tqdm

        if mode not in MODES:
            raise TIStudioError(f"--latent-sampling {mode!r} is unknown; use one of {', '.join(MODES)}")
        if not records:
            raise TIStudioError("no training images to encode; pass --data with a folder of images")
        check_size(width, height)
        if store is not None:
            mean, std = store.load_or_encode(records, encode, width=width, height=height, mode=mode,
                                             flip=flip, batch_size=batch_size, generator=generator,
                                             progress=progress, check=cls._check_weight_maps)
            return cls(tuple(records), width, height, mode, flip, mean, std)
        views, per_call = (2 if flip else 1), max(1, batch_size)
        means, stds = [], []
        with tqdm(total=len(records) * views, desc="caching latents", unit="img", disable=not progress) as bar, \
                torch.no_grad():
            for start in range(0, len(records), per_call):
                chunk = records[start:start + per_call]
                mean, std = encode_views(chunk, encode, width, height, flip)
                if start == 0:  # fail before encoding the rest of the dataset
                    cls._check_weight_maps(records, mean.shape[-2:])
                if mode == "once":  # drawn in the encoder's [views*b, ...] order, as always
                    noise = torch.randn((views * len(chunk), *mean.shape[2:]), generator=generator)
                    mean = mean + std * noise.view(views, len(chunk), *mean.shape[2:]).transpose(0, 1)
                means.append(mean)
                if mode == "random":
                    stds.append(std)
                bar.update(len(chunk) * views)
        return cls(tuple(records), width, height, mode, flip, torch.cat(means).contiguous(),
                   torch.cat(stds).contiguous() if stds else None)

    @staticmethod
    def _check_weight_maps(records: Sequence[ImageRecord], latent_hw: torch.Size) -> None:
        for r in records:
            if r.weight_map is not None and r.weight_map.shape[-2:] != latent_hw:
                raise TIStudioError(f"weight map of {r.path} is {tuple(r.weight_map.shape[-2:])} but the "
                                    f"latents are {tuple(latent_hw)}; load it with the training size")

    def __len__(self) -> int:
        return len(self.records)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """(C, h, w) of one latent."""
        return tuple(self.mean.shape[2:])

    def _views(self, indices: Sequence[int], flips: Sequence[bool]) -> list[int]:
        if len(indices) != len(flips):
            raise ValueError(f"{len(indices)} indices but {len(flips)} flips")
        if any(flips) and not self.flip:
            raise ValueError("a flipped latent was asked for but the cache was built with flip=False")
        return [1 if f else 0 for f in flips]

    def get(self, indices: Sequence[int], flips: Sequence[bool],
            generator: torch.Generator | None = None) -> torch.Tensor:
        """[B, C, h, w] fp32 CPU latents (unscaled); `random` mode draws with `generator`."""
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        views = torch.as_tensor(self._views(indices, flips), dtype=torch.long)
        mean = self.mean[idx, views]
        if self.mode != "random":
            return mean.clone()
        return mean + self.std[idx, views] * torch.randn(mean.shape, generator=generator)

    def weights(self, indices: Sequence[int], flips: Sequence[bool]) -> torch.Tensor | None:
        """[B, 1, h, w] loss weights (mirrored with their image; 1 where an image has no map), or None
        when no image in the batch has a map."""
        views = self._views(indices, flips)
        maps = [self.records[i].weight_map for i in indices]
        if all(m is None for m in maps):
            return None
        ones = torch.ones(1, *self.latent_shape[1:])
        return torch.stack([(ones if m is None else m.flip(-1) if v else m)
                            for m, v in zip(maps, views)])

    def pixels(self, index: int, flip: bool = False) -> torch.Tensor:
        """[3, H, W] in [-1, 1], reloaded from disk (pixels are not kept: they dwarf the latents)."""
        record = self.records[index]
        image = load_image(record.path, self.width, self.height, record.grayscale)
        return image.flip(-1) if flip else image
