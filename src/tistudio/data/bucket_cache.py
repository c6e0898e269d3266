"""The training latents as one cache over aspect-ratio buckets (data/buckets.py): one LatentCache per
bucket, each at its own size, behind the LatentCache interface the loop uses, indexed by the
dataset's own item order. A batch comes from one bucket (data/batches.bucket_batch_at), so its
latents stack. The disk store keys its files by size, so each bucket has its own store files and
an image that moves to another bucket is encoded there.

Without placements (--no-buckets, or one aspect ratio) it is a single LatentCache at the training
size and gives no SDXL size ids: today's behaviour, bit for bit.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import torch

from ..events import Callback, Message
from .buckets import Placement, bucket_table, size_ids_tensor
from .dataset import ImageRecord, load_weight_map
from .latent_cache import LatentCache
from .latent_encode import EncodeFn
from .latent_store import LatentStore


@dataclass(frozen=True, eq=False)
class BucketedCache:
    records: tuple[ImageRecord, ...]
    placements: tuple[Placement, ...] | None
    groups: tuple[int, ...]             # item -> index into `parts`
    slots: tuple[int, ...]              # item -> its index inside that part
    parts: tuple[LatentCache, ...]

    @classmethod
    def build(cls, records: Sequence[ImageRecord], encode: EncodeFn, *, width: int, height: int,
              placements: Sequence[Placement] | None, factor: int = 8, callback: Callback | None = None,
              store: LatentStore | None = None, **options) -> "BucketedCache":
        """`options`: LatentCache.build's (mode, flip, batch_size, seed, progress)."""
        records = tuple(records)
        if placements is None:
            part = LatentCache.build(records, encode, width=width, height=height, callback=callback,
                                     store=store, **options)
            return cls(records, None, (0,) * len(records), tuple(range(len(records))), (part,))
        placements = tuple(placements)
        sizes = list(bucket_table(placements))  # bucket order: by aspect ratio
        groups = tuple(sizes.index("{}x{}".format(*p.bucket)) for p in placements)
        if callback is not None:
            callback(Message("info", "buckets (size: images): " + ", ".join(
                f"{k}: {v}" for k, v in bucket_table(placements).items())))
        parts, slots = [], [0] * len(records)
        for g, size in enumerate(sizes):
            w, h = map(int, size.split("x"))
            members = [i for i, group in enumerate(groups) if group == g]
            for j, i in enumerate(members):
                slots[i] = j
            # Weight maps were read at the training size; a bucket needs them at its own.
            mine = [r if r.weight_map is None or (w, h) == (width, height)
                    else replace(r, weight_map=load_weight_map(r.path, w, h, factor)) for r in
                    (records[i] for i in members)]
            parts.append(LatentCache.build(mine, encode, width=w, height=h, callback=callback, store=store,
                                           **options))
        return cls(records, placements, groups, tuple(slots), tuple(parts))

    def __len__(self) -> int:
        return len(self.records)

    def table(self) -> dict[str, int]:
        """"WxH" -> images (summary.json); the training size alone when there are no buckets."""
        if self.placements is None:
            part = self.parts[0]
            return {f"{part.width}x{part.height}": len(self)}
        return bucket_table(self.placements)

    def _part(self, indices: Sequence[int]) -> tuple[LatentCache, list[int]]:
        groups = {self.groups[i] for i in indices}
        if len(groups) != 1:
            raise ValueError(f"a batch mixes buckets: items {list(indices)}")
        return self.parts[groups.pop()], [self.slots[i] for i in indices]

    def get(self, indices: Sequence[int], flips: Sequence[bool],
            generator: torch.Generator | None = None) -> torch.Tensor:
        part, slots = self._part(indices)
        return part.get(slots, flips, generator)

    def weights(self, indices: Sequence[int], flips: Sequence[bool]) -> torch.Tensor | None:
        part, slots = self._part(indices)
        return part.weights(slots, flips)

    def pixels(self, index: int, flip: bool = False) -> torch.Tensor:
        return self.parts[self.groups[index]].pixels(self.slots[index], flip)

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
