"""The training latents as one cache over aspect-ratio buckets (data/buckets.py) and augmentation
variants (data/augment.py): one LatentCache per bucket, each at its own size, behind the
LatentCache interface the loop uses.

Indices. The dataset's items 0..N-1 are what batches are drawn from (`groups`: each item's bucket,
for data/batches.bucket_batch_at, so a batch's latents stack). Each item has K variants (K = 1
without augmentation); the cache's own index, which get/weights/pixels/records take, is
item * K + variant, and `variant_indices` turns a micro-batch's items into them. The disk store
keys its files by size, so each bucket has its own store files and an image that moves to another
bucket is encoded there.

Without placements (--no-buckets, or one aspect ratio) and without augmentation it is a single
LatentCache at the training size that gives no SDXL size ids: today's behaviour, bit for bit.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import torch

from ..events import Callback, Message
from .augment import pick, variants
from .buckets import Placement, bucket_table, common_bucket, place, size_ids_tensor, used_buckets
from .dataset import ImageRecord, load_weight_map
from .latent_cache import LatentCache
from .latent_encode import EncodeFn, image_key
from .latent_store import LatentStore


@dataclass(frozen=True, eq=False)
class BucketedCache:
    records: tuple[ImageRecord, ...]            # per cache index (item * variants + variant)
    placements: tuple[Placement, ...] | None    # per cache index; None: the fixed size, no size ids
    groups: tuple[int, ...]                     # per item: its bucket, an index into `parts`
    slots: tuple[int, ...]                      # per cache index: its index inside its part
    parts: tuple[LatentCache, ...]
    variants: int = 1
    seed: int = 0

    @classmethod
    def build(cls, records: Sequence[ImageRecord], encode: EncodeFn, *, width: int, height: int,
              placements: Sequence[Placement] | None, factor: int = 8, seed: int = 0,
              augment: tuple[int, bool, tuple[float, ...]] = (1, False, (0.0,) * 4),
              callback: Callback | None = None, store: LatentStore | None = None, **options) -> "BucketedCache":
        """`placements`: per record (plan_buckets); `augment`: (variants per image, random crop,
        colour jitter maxima); `options`: LatentCache.build's (mode, flip, batch_size, progress, lazy)."""
        n, random_crop, jitter = augment
        expanded = [[replace(r, augment=a) for a in variants(image_key(r), seed, n, random_crop, tuple(jitter))]
                    for r in records]
        k = len(expanded[0]) if expanded else 1
        virtual = tuple(v for item in expanded for v in item)
        if placements is None:
            groups, sizes, spots = (0,) * len(records), [(width, height)], None
        else:
            sizes = used_buckets(placements)  # by aspect ratio
            groups = tuple(sizes.index(p.bucket) for p in placements)
            spots = tuple(place(placements[i // k].original, placements[i // k].bucket, r.augment.centering)
                          for i, r in enumerate(virtual))
            if callback is not None:
                callback(Message("info", "buckets (size: images): " + ", ".join(
                    f"{key}: {v}" for key, v in bucket_table(placements).items())))
        parts, slots = [], [0] * len(virtual)
        for g, (w, h) in enumerate(sizes):
            members = [i for i in range(len(virtual)) if groups[i // k] == g]
            for j, i in enumerate(members):
                slots[i] = j
            mine = [cls._fitted_map(virtual[i], w, h, width, height, factor) for i in members]
            parts.append(LatentCache.build(mine, encode, width=w, height=h, seed=seed, callback=callback,
                                           store=store, **options))
        return cls(virtual, spots, groups, tuple(slots), tuple(parts), k, seed)

    @staticmethod
    def latent_bytes(count: int, placements: Sequence[Placement] | None, *, width: int, height: int,
                     channels: int, factor: int = 8, seed: int = 0,
                     augment: tuple[int, bool, tuple[float, ...]] = (1, False, (0.0,) * 4),
                     flip: bool = False, mode: str = "once") -> int:
        """Bytes of the latent arrays build() will hold for `count` records with these arguments:
        each image's variants and their mirrors, [channels, h/factor, w/factor] float32 at its bucket's
        size (the training size without buckets), twice over in `random` mode (mean and std). What
        `--latent-cache auto` weighs (latent_store.store_for)."""
        n, random_crop, jitter = augment
        k = len(variants("", seed, n, random_crop, tuple(jitter)))  # as many for every image
        sizes = [(width, height)] * count if placements is None else [p.bucket for p in placements]
        per_view = sum(channels * (h // factor) * (w // factor) for w, h in sizes)
        return 4 * per_view * k * (2 if flip else 1) * (2 if mode == "random" else 1)

    @staticmethod
    def _fitted_map(r: ImageRecord, w: int, h: int, width: int, height: int, factor: int) -> ImageRecord:
        """The record with its weight map read for its bucket and crop (make_records read it for
        the training size and the centred crop)."""
        if r.weight_map is None or ((w, h) == (width, height) and r.augment.centering == (0.5, 0.5)):
            return r
        return replace(r, weight_map=load_weight_map(r.path, w, h, factor, r.augment.centering))

    def __len__(self) -> int:
        return len(self.records)

    @property
    def left(self) -> int:
        """Images (mirrors included) a lazy build has yet to encode (LatentFill)."""
        return sum(part.fill.left for part in self.parts)

    @property
    def images(self) -> tuple[ImageRecord, ...]:
        """One record per dataset item (its first variant)."""
        return self.records[::self.variants]

    def records_of(self, indices: Sequence[int]) -> list[int]:
        """The dataset items (record list indices) of cache indices: what concepts are keyed by."""
        return [i // self.variants for i in indices]

    def indices_of(self, records: Sequence[int]) -> list[int]:
        """Every variant's cache index of these records, in order."""
        k = self.variants
        return [r * k + v for r in records for v in range(k)]

    def variant_indices(self, items: Sequence[int], first_position: int) -> list[int]:
        """The cache indices of a micro-batch's items: each sample's variant is drawn by its place in
        the sample stream (data/augment.pick), so it is a pure function of (seed, step)."""
        k = self.variants
        return [item * k + pick(self.seed, first_position + j, k) for j, item in enumerate(items)]

    def table(self) -> dict[str, int]:
        """"WxH" -> images (summary.json); the training size alone when there are no buckets."""
        if self.placements is None:
            part = self.parts[0]
            return {f"{part.width}x{part.height}": len(self.groups)}
        return bucket_table(self.placements[::self.variants])

    def preview_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) to preview at: the training size `width` x `height` without buckets,
        else the bucket most images train at (buckets.common_bucket; docs/buckets.md)."""
        if self.placements is None:
            return width, height
        return common_bucket(self.placements[::self.variants], width, height)

    def _part(self, indices: Sequence[int]) -> tuple[LatentCache, list[int]]:
        groups = {self.groups[i // self.variants] for i in indices}
        if len(groups) != 1:
            raise ValueError(f"a batch mixes buckets: cache indices {list(indices)}")
        return self.parts[groups.pop()], [self.slots[i] for i in indices]

    def get(self, indices: Sequence[int], flips: Sequence[bool],
            generator: torch.Generator | None = None) -> torch.Tensor:
        part, slots = self._part(indices)
        return part.get(slots, flips, generator)

    def weights(self, indices: Sequence[int], flips: Sequence[bool]) -> torch.Tensor | None:
        part, slots = self._part(indices)
        return part.weights(slots, flips)

    def pixels(self, index: int, flip: bool = False) -> torch.Tensor:
        part, slots = self._part([index])
        return part.pixels(slots[0], flip)

    def pixel_size(self, indices: Sequence[int]) -> tuple[int, int]:
        """(height, width) the batch trains at."""
        part, _ = self._part(indices)
        return part.height, part.width

    def size_ids(self, indices: Sequence[int], flips: Sequence[bool]) -> torch.Tensor | None:
        """[B, 6] SDXL time ids from each image's true size and crop, or None without buckets (the
        fixed training size, models/denoiser.size_ids)."""
        if self.placements is None:
            return None
        return size_ids_tensor([self.placements[i] for i in indices], flips)
