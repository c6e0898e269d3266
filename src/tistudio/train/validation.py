"""A deterministic validation loss: the objective's loss on a fixed set of (image, timestep, noise)
triples, so two evaluations of the same vectors give the same number and a change is the vectors'.

The training loss of one step is dominated by its random timestep and noise (a t≈50 step and a
t≈950 step differ by an order of magnitude), so its curve cannot tell a better embedding from a
lucky draw. Here every image meets the same grid of timesteps across the schedule, each with noise
from a seed fixed by (seed, image, timestep), and the same template line every time.

Images: held-out ones (--val-split, --val-data), never trained on, else the training images
themselves (then the number measures fit, not generalisation: the docs say so).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..data.bucket_cache import BucketedCache
from ..data.buckets import Placement
from ..data.dataset import make_records, scan_images
from ..data.prompts import Prompt, fill, process_tags
from ..errors import TIStudioError
from ..hashing import file_sha256
from ..models.components import Components
from ..models.denoiser import noisy_and_target
from ..rng import python_random, torch_generator
from .objectives.base import MicroBatch


def split_images(cfg, images: list[Path]) -> tuple[list[Path], list[Path]]:
    """(training images, held-out validation images). A --val-data image is also removed from the
    training set when the same file (by content) sits in --data, so it is never trained on."""
    if cfg.val_data:
        if not Path(cfg.val_data).is_dir():
            raise TIStudioError(f"--val-data {cfg.val_data}: not a folder; pass a folder of validation images")
        held, _ = scan_images(cfg.val_data)
        if not held:
            raise TIStudioError(f"--val-data {cfg.val_data}: no readable images there")
        digests = {file_sha256(p) for p in held}
        train = [p for p in images if file_sha256(p) not in digests]
    elif cfg.val_split:
        k = max(1, round(len(images) * cfg.val_split))
        chosen = set(python_random(cfg.seed, "val-split").sample(range(len(images)), min(k, len(images))))
        held = [p for i, p in enumerate(images) if i in chosen]
        train = [p for i, p in enumerate(images) if i not in chosen]
    else:
        return images, []
    if not train:
        raise TIStudioError(f"--val-split/--val-data leaves no training images in {cfg.data}; hold out "
                            "fewer images or add more to --data")
    return train, held


def held_out_cache(cfg, held: list[Path], encode, *, width: int, height: int, factor: int,
                   placements: Sequence[Placement] | None = None, batch_size: int = 1,
                   progress: bool = False) -> BucketedCache | None:
    """Latents of the held-out images: posterior means (no sampling noise in a validation number).
    `placements`: per image, in the training run's bucket table (data/buckets.plan_buckets, by the
    rule the training images follow) when training is in buckets; None: the fixed training size."""
    if not held:
        return None
    records = make_records(held, width=width, height=height, factor=factor,
                           regex=cfg.filename_regex, join=cfg.filename_join)
    return BucketedCache.build(records, encode, width=width, height=height, placements=placements, factor=factor,
                               mode="deterministic", batch_size=batch_size, progress=progress)


def timestep_grid(k: int, num_train_timesteps: int) -> list[int]:
    """k timesteps at the centres of k equal parts of the schedule (5 of 1000: 100, 300, ..., 900)."""
    return [int((i + 0.5) * num_train_timesteps / k) for i in range(k)]


def spread(n: int, m: int) -> list[int]:
    """At most m indices spread evenly over range(n), always including 0."""
    k = min(n, m)
    return [i * n // k for i in range(k)]


@dataclass(frozen=True)
class ValidationSet:
    """Everything fixed: scaled latents [N,C,h,w], noise [N,C,h,w], timesteps [N], prompts and loss
    weights per triple, where N = images x timesteps."""

    latents: torch.Tensor
    noise: torch.Tensor
    timesteps: torch.Tensor
    prompts: tuple[Prompt, ...]
    weights: torch.Tensor | None
    indices: tuple[int, ...]
    held_out: bool
    pixel_size: tuple[int, int] | None = None   # (height, width) of the latents' images; None: the run's
    size_ids: torch.Tensor | None = None        # [N, 6] SDXL ids of training images in buckets

    @classmethod
    def build(cls, cfg, c: Components, cache: BucketedCache, name: str | Callable[[int], str],
              lines: Sequence[str], held_out: bool,
              training: Sequence[int] | None = None) -> "ValidationSet | ValidationSets":
        """Triples from `cache` (the held-out images', else the training cache: its `training`
        indices, the training concepts' images), prompts from the template `lines` with the trigger
        `name`, or `name(i)` for cache item i (several embeddings: report.validation_names). One
        set, or one per size when the images are in aspect-ratio buckets (held-out images are in
        the training run's buckets too: held_out_cache)."""
        name_of = name if callable(name) else lambda i: name
        grid = timestep_grid(cfg.val_timesteps, c.scheduler.config.num_train_timesteps)
        latents, noise, ts, prompts, indices = [], [], [], [], []
        # Without held-out images, the training concepts' own: reg images are not what is learnt.
        pool = list(range(len(cache))) if held_out or training is None else list(training)
        for i in [pool[k] for k in spread(len(pool), cfg.val_images)]:
            # One generator per image: a "random"-mode cache draws the same latent every time.
            latent = cache.get([i], [False], torch_generator(cfg.seed, "val-latent", i)) * c.vae_scale
            filewords = process_tags(cache.records[i].caption, rng=None)
            for k, t in enumerate(grid):
                gen = torch_generator(cfg.seed, "val-noise", i, k)
                latents.append(latent)
                noise.append(torch.randn(latent.shape, generator=gen))
                ts.append(t)
                line = (i + k) % len(lines)  # every template line is used, always with the same image
                prompts.append(Prompt(line, filewords, fill(lines[line], name_of(i), filewords)))
                indices.append(i)
        sizes: dict[tuple, list[int]] = {}  # latent shape -> its triples, in order
        for j, latent in enumerate(latents):
            sizes.setdefault(tuple(latent.shape), []).append(j)
        parts = []
        for group in sizes.values():
            mine = [indices[j] for j in group]
            parts.append(cls(torch.cat([latents[j] for j in group]), torch.cat([noise[j] for j in group]),
                             torch.tensor([ts[j] for j in group], dtype=torch.long), tuple(prompts[j] for j in group),
                             cache.weights(mine, [False] * len(mine)), tuple(mine), held_out,
                             cache.pixel_size(mine), cache.size_ids(mine, [False] * len(mine))))
        return parts[0] if len(parts) == 1 else ValidationSets(tuple(parts), held_out)

    def __len__(self) -> int:
        return len(self.prompts)

    @torch.no_grad()
    def loss(self, objective, c: Components, device: torch.device, batch_size: int,
             pixel_size: tuple[int, int]) -> float:
        """Mean per-sample `objective` loss over every triple, in micro-batches of `batch_size`
        (--batch-size); `pixel_size` (height, width) unless the set has its own (a bucket's)."""
        return self.total(objective, c, device, batch_size, pixel_size) / len(self)

    @torch.no_grad()
    def total(self, objective, c: Components, device: torch.device, batch_size: int,
              pixel_size: tuple[int, int]) -> float:
        total, dev, step = 0.0, device, batch_size
        for a in range(0, len(self), step):
            b = min(a + step, len(self))
            latents, noise, t = self.latents[a:b], self.noise[a:b], self.timesteps[a:b]
            noisy, target = noisy_and_target(c, latents, noise, t)
            mb = MicroBatch(prompts=list(self.prompts[a:b]), timesteps=t.to(dev), noisy=noisy.to(dev),
                            target=target.to(dev), weights=None if self.weights is None else self.weights[a:b].to(dev),
                            indices=list(self.indices[a:b]), flips=[False] * (b - a),
                            pixel_size=self.pixel_size or pixel_size,
                            size_ids=None if self.size_ids is None else self.size_ids[a:b])
            total += float(objective.loss(mb).double().sum())
        return total


@dataclass(frozen=True)
class ValidationSets:
    """The validation triples of training images in several aspect-ratio buckets: one set per size
    (latents of different sizes do not batch), the loss their mean over every triple."""

    parts: tuple[ValidationSet, ...]
    held_out: bool

    def __len__(self) -> int:
        return sum(len(p) for p in self.parts)

    @torch.no_grad()
    def loss(self, objective, c: Components, device: torch.device, batch_size: int,
             pixel_size: tuple[int, int]) -> float:
        return sum(p.total(objective, c, device, batch_size, pixel_size) for p in self.parts) / len(self)
