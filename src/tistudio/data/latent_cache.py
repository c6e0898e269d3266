"""VAE latents for every training image, each encoded once (before training, or `lazy`: the first time
a step asks for it) so the VAE never runs per step (and can then be offloaded). Held on the CPU in
fp32; the loop moves each batch to its device.

Modes (README, `--latent-sampling`): `once` keeps one posterior sample drawn when encoded,
`deterministic` the posterior mean, `random` mean and std for a fresh sample on every `get`. Only
what the mode needs is kept. With `flip`, the mirrored image is encoded too, so a flipped sample is
the true latent of the mirrored picture rather than a mirrored latent (the VAE is not equivariant).
Latents are unscaled: the caller applies the VAE's scaling factor. Encoding and the `once` draw
are data/latent_encode.py's, shared with the disk store.

With a `store` (data/latent_store.py) the latents live in a memory-mapped file instead of RAM, reused
by later runs and resumes until an image or the VAE changes; the interface is the same.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ..errors import TIStudioError
from ..events import Callback
from .dataset import ImageRecord, check_size, load_image
from .latent_encode import MODES, CachingProgress, EncodeFn, LatentFill
from .latent_store import LatentStore


@dataclass(frozen=True, eq=False)
class LatentCache:
    records: tuple[ImageRecord, ...]
    width: int
    height: int
    mode: str
    flip: bool
    # [N, V, C, h, w] with V = 2 when flip (index 1 = mirrored) else 1, filled as asked for (or all
    # at once). `once`: the drawn sample in `mean`, `std` None; `deterministic`: `std` None; `random`: both.
    fill: LatentFill

    @classmethod
    def build(cls, records: Sequence[ImageRecord], encode: EncodeFn, *, width: int, height: int,
              mode: str = "once", flip: bool = False, batch_size: int = 1, seed: int = 0,
              progress: bool = True, callback: Callback | None = None,
              store: LatentStore | None = None, lazy: bool = False) -> "LatentCache":
        """`batch_size`: images per encoder call (speed only); `seed`: the run's, for `once` draws.
        `lazy`: encode each image when `get` first asks for it (the same numbers, LatentFill) instead
        of all of them now; a `store`'s new arrays and index are written when the last is in."""
        if mode not in MODES:
            raise TIStudioError(f"--latent-sampling {mode!r} is unknown; use one of {', '.join(MODES)}")
        if not records:
            raise TIStudioError("no training images to encode; pass --data with a folder of images")
        check_size(width, height)
        records = tuple(records)
        if store is not None:
            fill = store.open(records, encode, width=width, height=height, mode=mode, flip=flip,
                              batch_size=batch_size, seed=seed, progress=progress, callback=callback,
                              check=cls._check_weight_maps)
        else:
            bar = CachingProgress(len(records) * (2 if flip else 1), progress, callback)
            fill = LatentFill(records, encode, width=width, height=height, mode=mode, flip=flip, seed=seed,
                              batch_size=batch_size, bar=bar, check=cls._check_weight_maps)
        if not lazy:
            fill.ensure_all()
        return cls(records, width, height, mode, flip, fill)

    @property
    def mean(self) -> torch.Tensor:
        """Every record's values (encoding what is not yet)."""
        self.fill.ensure_all()
        return self.fill.values

    @property
    def std(self) -> torch.Tensor | None:
        self.fill.ensure_all()
        return self.fill.std

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
        if self.fill.values is None:
            self.fill.ensure([0])
        return tuple(self.fill.values.shape[2:])

    def _views(self, indices: Sequence[int], flips: Sequence[bool]) -> list[int]:
        if len(indices) != len(flips):
            raise ValueError(f"{len(indices)} indices but {len(flips)} flips")
        if any(flips) and not self.flip:
            raise ValueError("a flipped latent was asked for but the cache was built with flip=False")
        return [1 if f else 0 for f in flips]

    def get(self, indices: Sequence[int], flips: Sequence[bool],
            generator: torch.Generator | None = None) -> torch.Tensor:
        """[B, C, h, w] fp32 CPU latents (unscaled); `random` mode draws with `generator`."""
        views = torch.as_tensor(self._views(indices, flips), dtype=torch.long)
        self.fill.ensure(indices)
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        mean = self.fill.values[idx, views]
        if self.mode != "random":
            return mean.clone()
        return mean + self.fill.std[idx, views] * torch.randn(mean.shape, generator=generator)

    def weights(self, indices: Sequence[int], flips: Sequence[bool]) -> torch.Tensor | None:
        """[B, 1, h, w] loss weights (mirrored with their image; 1 where an image has no map), or None
        when no image in the batch has a map."""
        views = self._views(indices, flips)
        maps = [self.records[i].weight_map for i in indices]
        if all(m is None for m in maps):
            return None
        self.fill.ensure(indices)  # the latent size (and a first encode's weight-map check)
        ones = torch.ones(1, *self.latent_shape[1:])
        return torch.stack([(ones if m is None else m.flip(-1) if v else m)
                            for m, v in zip(maps, views)])

    def pixels(self, index: int, flip: bool = False) -> torch.Tensor:
        """[3, H, W] in [-1, 1], reloaded from disk (pixels are not kept: they dwarf the latents)."""
        record = self.records[index]
        image = load_image(record.path, self.width, self.height, record.grayscale, record.augment)
        return image.flip(-1) if flip else image
