"""Textual Inversion (Gal et al. 2022): the prompt with the embedding, one UNet call, MSE (or the
recipe's --loss) to the noise, or to the velocity for v-prediction models. Several embeddings train
at once when prompts name them (docs/multi-embedding.md): each prompt's triggers get their vectors,
so an embedding a micro-batch never names gets no gradient from it."""
from __future__ import annotations

import contextlib

import torch

from ...models.components import Components
from ...models.conditioning import PromptEncoder
from ...models.denoiser import predict
from .base import MicroBatch, TrainableEmbedding


class TIObjective:
    def __init__(self, components: Components, encoder: PromptEncoder, embeddings: list[TrainableEmbedding]):
        self.c = components
        self.encoder = encoder
        self.embeddings = list(embeddings)

    def vectors(self) -> dict[str, tuple[torch.Tensor, ...]]:
        return {e.name: e.params for e in self.embeddings}

    def attached(self):
        """Nothing to set up for the loop: the vectors enter through the prompt encoder."""
        return contextlib.nullcontext()

    def loss(self, batch: MicroBatch) -> torch.Tensor:
        cond = self.encoder.encode([p.text for p in batch.prompts], self.vectors())
        pred = predict(self.c, batch.noisy, batch.timesteps, cond, batch.pixel_size, batch.size_ids)
        return batch.criterion(pred, batch.target, batch.weights)
