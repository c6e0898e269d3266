"""The toy world's draws: uint8 RGB arrays from the project's one sampler (generate/sample.py, the
diffusers pipeline), with the toy model's scoring settings (DDIM, 20 steps, CFG 5). Image i starts
from the noise of seed + i whatever the batch, so two calls with the same seed (an embedding and its
init word) start every image from the same noise."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

from ..generate.sample import GenerateOptions, sample
from .scenes import FRAMES

SAMPLE_SEED = 4321     # seed of image 0 of the fidelity benchmark's learned and baseline images


def sample_prompts(word: str, n: int, seed: int = SAMPLE_SEED) -> list[str]:
    """n prompts from the toy captions' template frames ("a photo of a {}", ...) around `word`."""
    rng = np.random.default_rng(seed)
    return [FRAMES[int(rng.integers(len(FRAMES)))].format(word) for _ in range(n)]


def draw(c, prompts: Sequence[str], negatives: Sequence[str], vectors: Mapping[str, Sequence[torch.Tensor]],
         *, seed: int = SAMPLE_SEED, steps: int = 20, guidance: float = 5.0, progress: bool = False,
         batch: int = 64) -> list[np.ndarray]:
    """[H, W, 3] uint8 images, one per prompt, at the model's own size, `batch` per pipeline call."""
    settings = GenerateOptions(prompt="", sampler="ddim", steps=steps, cfg=guidance, batch_size=batch)
    images = sample(c, settings, list(prompts), list(negatives), [seed + i for i in range(len(prompts))],
                    dict(vectors), progress=progress)
    return [np.asarray(image.convert("RGB")) for image in images]
