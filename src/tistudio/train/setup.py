"""What a training run is, built once by session.prepare and never changed while it trains: the
config, the model, the objective, the data, the schedule, the run folder, where it runs. What
changes as it trains (and what a resume restores) is state.TrainState."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch

from ..config import TrainConfig
from ..data.concepts import Concepts
from ..data.bucket_cache import BucketedCache
from ..data.prompts import PromptSampler
from ..events import Callback, StopToken
from ..models.components import Components
from ..runs.lock import RunLock
from ..schedules import LRSchedule, ShapedSchedule
from .distributed import Distributed
from .objectives.base import Objective
from .outputs import TrainingFolder
from .recipe import Recipe
from .speed import SpeedSettings

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class Hook(Protocol):
    """An observer of the loop (validation, the run report, a test's spy): after every optimizer
    step, and once at the end with the loop's TrainResult. It gets what it needs when it is made."""

    def after_step(self, step: int, loss: float, lr: float) -> None: ...

    def at_end(self, result) -> None: ...


@dataclass(frozen=True)
class Setup:
    """Frozen: no field is replaced once built. The objects it holds keep their own working state
    (the latent cache, the run folder's loss rows, the hooks' records); what a resume must restore
    lives in TrainState, not here."""

    cfg: TrainConfig
    c: Components
    objective: Objective
    cache: BucketedCache   # the latents, per aspect-ratio bucket and augmentation variant
    prompts: PromptSampler
    schedule: LRSchedule | ShapedSchedule
    recipe: Recipe        # timesteps, noise, loss weights, norm control (train/recipe.py)
    run: TrainingFolder
    device: torch.device
    width: int
    height: int
    callback: Callback
    stop: StopToken
    speed: SpeedSettings   # the resolved --profile and speed options (train/speed.py)
    dist: Distributed = field(default_factory=Distributed)   # this process's share (train/distributed.py)
    lock: RunLock | None = None   # held on the run folder until train() ends (runs/lock.py)
    hooks: list[Hook] = field(default_factory=list)   # run after every step and at the end, in order
    concepts: Concepts | None = None   # epoch draws, per-concept weights and templates (data/concepts.py)
    preview_prompts: tuple = ()   # --preview-prompts lines (train/preview_prompts.py)
    # The vocabulary's median token norm per text encoder (health.vocabulary_medians), computed once:
    # the lr warning, --norm, --max-norm and the vector-health watch all measure against it.
    medians: tuple[float, ...] = ()

    @property
    def dtype(self) -> torch.dtype:
        """The frozen weights' dtype (the trained tensors are always fp32)."""
        return DTYPES[self.speed.precision]
