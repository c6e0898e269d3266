"""What every objective shares: the Objective protocol the loop trains through, trainable
embeddings (only their rows are Parameters, fp32) and the step batch the loop prepares."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, ContextManager, Protocol, Sequence, runtime_checkable

import torch

from ...embedding.embedding import Embedding
from ...errors import TIStudioError
from ...models.components import Components
from ...models.denoiser import per_sample_mse


class Trainable(Protocol):
    """What the loop steps: an embedding's vectors or a hypernetwork's weights (`params`, the
    optimizer's tensors), a learning-rate weight, and a snapshot to save at a step."""

    lr_weight: float
    stop_step: int   # after this step its tensors stop changing; 0: they train to --steps (train/stops.py)
    params: tuple[torch.Tensor, ...]

    @property
    def name(self) -> str: ...

    def snapshot(self, step: int, name: str | None = None, vectors=None): ...


@runtime_checkable
class Objective(Protocol):
    """A training objective (TI, DreamArtist, hypernetwork): what trains, positive first, and the
    per-sample loss [B] of a micro-batch. `attached()` is its set-up for the loop's lifetime."""

    c: Components
    embeddings: Sequence[Trainable]

    def vectors(self) -> dict[str, tuple[torch.Tensor, ...]]: ...

    def loss(self, batch: "MicroBatch") -> torch.Tensor: ...

    def attached(self) -> ContextManager: ...


class TrainableEmbedding:
    """One embedding's vectors as fp32 Parameters (one per text encoder), plus a learning-rate weight
    applied on every schedule change (DreamArtist's negative multiplier, an [[embeddings]] table's
    lr_scale) and the step after which they stop changing (stop_step; 0: never, train/stops.py)."""

    def __init__(self, source: Embedding, device: torch.device, lr_weight: float = 1.0, stop_step: int = 0):
        self.source = source
        self.lr_weight = lr_weight
        self.stop_step = stop_step
        self.params = tuple(torch.nn.Parameter(v.detach().float().to(device).clone()) for v in source.vectors)

    @property
    def name(self) -> str:
        return self.source.name

    def snapshot(self, step: int, name: str | None = None, vectors=None) -> Embedding:
        vectors = tuple(v.detach().float().cpu().clone() for v in (vectors or self.params))
        return replace(self.source, name=name or self.source.name, vectors=vectors, step=step,
                       meta=dict(self.source.meta))


@dataclass
class MicroBatch:
    """One micro-batch, ready for the objective: the scaled latents [B,4,h,w] already noised at
    `timesteps` (`noisy`) with the prediction they should give (`target`)."""

    prompts: list            # data.prompts.Prompt (line_index, filewords, text)
    timesteps: torch.Tensor
    noisy: torch.Tensor
    target: torch.Tensor
    weights: torch.Tensor | None   # [B,1,h,w] loss weights (attention / alpha maps) or None
    indices: list[int]
    flips: list[bool]
    pixel_size: tuple[int, int]    # (height, width)
    size_ids: torch.Tensor | None = None   # [B,6] SDXL time ids per image (buckets), None: pixel_size
    position: int = 0              # the first sample's place in the run's sample stream (keys dropout)
    # (pred, target, weights) -> per-sample loss [B]: the recipe's --loss (train/recipe.py)
    criterion: Callable = per_sample_mse


ENCODER_INDEX = {"l": 0, "g": 1}   # --train-encoders: SDXL's encoder order (CLIP-L, then CLIP-G)


def train_only(objective, which: str, n_encoders: int) -> None:
    """--train-encoders l|g: only that encoder's rows of every embedding train; the other's stay
    exactly at their start (no gradient, not in the optimizer, skipped by --norm) and are saved."""
    if which == "both":
        return
    if n_encoders != 2:
        raise TIStudioError(f"--train-encoders {which} chooses one of SDXL's two text encoders; this model has "
                            f"{n_encoders}: drop it")
    for e in objective.embeddings:
        for i, p in enumerate(e.params):
            p.requires_grad_(i == ENCODER_INDEX[which])

