"""Which images each optimizer step trains on, as a pure function of (seed, step), so a resumed run
sees exactly the batches an uninterrupted one would (no sampler state to save).

Convention. Items form an endless stream: epoch 0's shuffled order, then epoch 1's, ... Optimizer
step k (0-based: the number of steps already completed) takes the E = batch_size * grad_accum
stream items k*E .. k*E + E - 1, split into grad_accum micro-batches of batch_size. A batch may run
across an epoch boundary, so no image is dropped and every image is seen equally often (even when
the dataset is smaller than a batch). A step belongs to the epoch of its first item:
epoch = k*E // n, and epoch_step counts the steps since that epoch's first step (both 0-based).
With aspect-ratio buckets (bucket_batch_at) the stream is one of whole micro-batches, each from
one bucket, by the same rules (docs/buckets.md).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Sequence

from ..rng import python_random


def epoch_order(n_items: int, epoch: int, seed: int) -> list[int]:
    """A permutation of range(n_items), fixed by (seed, epoch)."""
    order = list(range(n_items))
    python_random(seed, "order", epoch).shuffle(order)
    return order


def epoch_flips(n_items: int, epoch: int, seed: int) -> list[bool]:
    """flips[i]: whether item i is mirrored in this epoch (a fair coin per item per epoch)."""
    rng = python_random(seed, "flip", epoch)
    return [rng.random() < 0.5 for _ in range(n_items)]


@dataclass(frozen=True)
class StepBatch:
    micro_batches: tuple[tuple[int, ...], ...]  # grad_accum tuples of batch_size item indices
    flips: tuple[tuple[bool, ...], ...]         # same shape; all False without flip augmentation
    epoch: int
    epoch_step: int


def _first_step_of_epoch(epoch: int, n_items: int, per_step: int) -> int:
    return -(-epoch * n_items // per_step)  # ceil(epoch * n / E)


def batch_at(step: int, *, n_items: int, batch_size: int, grad_accum: int, seed: int,
             flip: bool = False) -> StepBatch:
    if n_items < 1 or batch_size < 1 or grad_accum < 1 or step < 0:
        raise ValueError(f"batch_at needs step >= 0 and positive sizes, got step={step}, "
                         f"n_items={n_items}, batch_size={batch_size}, grad_accum={grad_accum}")
    per_step = batch_size * grad_accum
    first = step * per_step
    orders: dict[int, tuple[list[int], list[bool]]] = {}
    items, flips = [], []
    for position in range(first, first + per_step):
        epoch, offset = divmod(position, n_items)
        if epoch not in orders:
            orders[epoch] = (epoch_order(n_items, epoch, seed),
                             epoch_flips(n_items, epoch, seed) if flip else [False] * n_items)
        order, epoch_flip = orders[epoch]
        items.append(order[offset])
        flips.append(epoch_flip[order[offset]])
    epoch = first // n_items

    def split(values: list) -> tuple[tuple, ...]:
        return tuple(tuple(values[i:i + batch_size]) for i in range(0, per_step, batch_size))

    return StepBatch(split(items), split(flips), epoch,
                     step - _first_step_of_epoch(epoch, n_items, per_step))


def _bucket_epoch(groups: Sequence[int], epoch: int, seed: int, batch_size: int) -> list[tuple[int, ...]]:
    """Epoch `epoch`'s batches with buckets: each bucket's items shuffled and cut into batches of
    `batch_size` (the last one filled from the start of the same shuffled order, so every batch is
    full and holds one bucket only), then all the epoch's batches shuffled together."""
    members: dict[int, list[int]] = {}
    for item, group in enumerate(groups):
        members.setdefault(group, []).append(item)
    batches = []
    for group in sorted(members):
        order = members[group]
        python_random(seed, "bucket-order", epoch, group).shuffle(order)
        count = -(-len(order) // batch_size)
        padded = [order[i % len(order)] for i in range(count * batch_size)]
        batches += [tuple(padded[i:i + batch_size]) for i in range(0, len(padded), batch_size)]
    python_random(seed, "bucket-batches", epoch).shuffle(batches)
    return batches


def bucket_batch_at(step: int, *, groups: Sequence[int], batch_size: int, grad_accum: int, seed: int,
                    flip: bool = False) -> StepBatch:
    """batch_at for bucketed data: `groups[i]` is item i's bucket, and no micro-batch mixes buckets.
    The stream is one of micro-batches (every epoch has the same number, B): step k takes stream
    batches k*grad_accum ... + grad_accum - 1, so it is still a pure function of (seed, step). A
    step belongs to the epoch of its first micro-batch. With a single bucket this is batch_at."""
    sizes = Counter(groups)  # bucket -> its items
    if len(sizes) <= 1:
        return batch_at(step, n_items=len(groups), batch_size=batch_size, grad_accum=grad_accum, seed=seed, flip=flip)
    if batch_size < 1 or grad_accum < 1 or step < 0:
        raise ValueError(f"bucket_batch_at needs step >= 0 and positive sizes, got step={step}, "
                         f"batch_size={batch_size}, grad_accum={grad_accum}")
    per_epoch = sum(-(-count // batch_size) for count in sizes.values())  # len(_bucket_epoch(...)), unshuffled
    first = step * grad_accum
    epochs: dict[int, tuple[list[tuple[int, ...]], list[bool]]] = {}
    micro, flips = [], []
    for position in range(first, first + grad_accum):
        epoch, offset = divmod(position, per_epoch)
        if epoch not in epochs:
            epochs[epoch] = (_bucket_epoch(groups, epoch, seed, batch_size),
                             epoch_flips(len(groups), epoch, seed) if flip else [False] * len(groups))
        batches, epoch_flip = epochs[epoch]
        micro.append(batches[offset])
        flips.append(tuple(epoch_flip[i] for i in batches[offset]))
    epoch = first // per_epoch
    return StepBatch(tuple(micro), tuple(flips), epoch, step - _first_step_of_epoch(epoch, per_epoch, grad_accum))
