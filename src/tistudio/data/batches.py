"""Which images each optimizer step trains on, as a pure function of (seed, step), so a resumed run
sees exactly the batches an uninterrupted one would (no sampler state to save).

Convention. Items form an endless stream: epoch 0's shuffled order, then epoch 1's, ... Optimizer
step k (0-based: the number of steps already completed) takes the E = batch_size * grad_accum
stream items k*E .. k*E + E - 1, split into grad_accum micro-batches of batch_size. A batch may run
across an epoch boundary, so no image is dropped and every image is seen equally often (even when
the dataset is smaller than a batch). A step belongs to the epoch of its first item:
epoch = k*E // n, and epoch_step counts the steps since that epoch's first step (both 0-based).
"""
from __future__ import annotations

from dataclasses import dataclass

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
