"""Every random draw of a run comes from a generator of its own, keyed by (seed, purpose, keys):
the order of epoch 3, the noise of sample 17, the `once` latent of image `cat.png`. A draw then
depends only on what it is for, never on how many draws came before it, so the batch size, gradient
accumulation, which images were already cached, or where a run was resumed cannot change it.

Keys are hashed (SHA-256) into a 63-bit seed, so they may be any values with a stable str(); the
same key gives the same numbers on every machine and Python build.
"""
from __future__ import annotations

import hashlib
import random

import torch


def seed_for(seed: int, purpose: str, *keys: object) -> int:
    """A 63-bit seed for the draw `purpose` of item `keys` in a run seeded with `seed`."""
    text = "\x1f".join(str(part) for part in ("tistudio", seed, purpose, *keys))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def torch_generator(seed: int, purpose: str, *keys: object) -> torch.Generator:
    """A CPU torch generator for one item's draw (tensors are drawn on the CPU, then moved)."""
    return torch.Generator().manual_seed(seed_for(seed, purpose, *keys))


def python_random(seed: int, purpose: str, *keys: object) -> random.Random:
    """A `random.Random` for one item's draw (orders, coins, template lines, tag dropout)."""
    return random.Random(seed_for(seed, purpose, *keys))
