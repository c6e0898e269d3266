"""DreamArtist / APT (Dong et al. 2022, "DreamArtist: Towards Controllable One-Shot Text-to-Image
Generation via Positive-Negative Prompt-Tuning"): a positive embedding NAME and a negative NAME-neg
trained together through classifier-free guidance.

Per micro-batch of B samples:
  prompts   positive = the template line with NAME; negative = the same line (same line index, same
            processed tags) with NAME-neg, or the line of the plain template (no [filewords]);
            all 2B prompts go through ONE PromptEncoder.encode call (the reference's separate calls
            broke when the two had different 75-token chunk counts)
  UNet      one call on the doubled batch [2B] (same x_t and t for each pair), SDXL's pooled
            output taken from each branch's own prompt
  guidance  pred = pred_neg + s(t) * (pred_pos - pred_neg), trained against the noise (epsilon
            models) or the velocity (v models) with the per-pixel attention weights
  recon     optional: + w * L1(VAE.decode(x̂0(pred)), image) for samples with t <= rec_max_timestep,
            optionally scaled by ᾱ_t (x̂0 at high noise is mostly noise)
"""
from __future__ import annotations

import contextlib
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from ...config import DreamArtistConfig
from ...data.prompts import fill
from ...models.components import Components
from ...models.conditioning import PromptEncoder
from ...models.denoiser import predict, predicted_x0
from ...cfg_schedule import parse_cfg
from .base import MicroBatch, TrainableEmbedding

# pixels(index, flip) -> [3, H, W] in [-1, 1] (data.latent_cache.LatentCache.pixels)
PixelsFn = Callable[[int, bool], torch.Tensor]


class DreamArtistObjective:
    def __init__(self, components: Components, encoder: PromptEncoder, positive: TrainableEmbedding,
                 negative: TrainableEmbedding, options: DreamArtistConfig, lines: Sequence[str],
                 plain_lines: Sequence[str] | None = None, pixels: PixelsFn | None = None):
        if options.reconstruction and pixels is None:
            raise ValueError("reconstruction needs the training images (pixels)")
        self.c = components
        self.encoder = encoder
        self.embeddings = [positive, negative]
        self.options = options
        self.schedule = parse_cfg(options.cfg)
        self.lines = list(lines)
        self.plain_lines = list(plain_lines) if plain_lines is not None else None
        self.pixels = pixels

    @property
    def positive(self) -> TrainableEmbedding:
        return self.embeddings[0]

    @property
    def negative(self) -> TrainableEmbedding:
        return self.embeddings[1]

    def vectors(self) -> dict[str, tuple[torch.Tensor, ...]]:
        return {e.name: e.params for e in self.embeddings}

    def attached(self):
        """Nothing to set up for the loop: the vectors enter through the prompt encoder."""
        return contextlib.nullcontext()

    def negative_prompts(self, prompts) -> list[str]:
        """The negative twin of each positive prompt: same template line and the same tags."""
        name = self.negative.name
        if self.plain_lines is not None:
            return [fill(self.plain_lines[p.line_index], name, "") for p in prompts]
        return [fill(self.lines[p.line_index], name, p.filewords) for p in prompts]

    def guided(self, batch: MicroBatch) -> torch.Tensor:
        """The guided prediction [B, 4, h, w] (noise or velocity, as the model predicts)."""
        b = batch.noisy.shape[0]
        texts = [p.text for p in batch.prompts] + self.negative_prompts(batch.prompts)
        cond = self.encoder.encode(texts, self.vectors())          # context [2B, L, D]
        ids = None if batch.size_ids is None else batch.size_ids.repeat(2, 1)
        both = predict(self.c, batch.noisy.repeat(2, 1, 1, 1), batch.timesteps.repeat(2), cond,
                       batch.pixel_size, ids)                       # [2B, 4, h, w]
        pos, neg = both[:b], both[b:]
        steps = self.c.scheduler.config.num_train_timesteps
        s = self.schedule.scale(batch.timesteps, steps).to(pos.device).view(-1, 1, 1, 1)
        return neg + s * (pos - neg)

    def loss(self, batch: MicroBatch) -> torch.Tensor:
        pred = self.guided(batch)
        loss = batch.criterion(pred, batch.target, batch.weights)
        if self.options.reconstruction and self.options.rec_weight > 0:
            loss = loss + self.options.rec_weight * self.reconstruction(batch, pred)
        return loss

    def reconstruction(self, batch: MicroBatch, pred: torch.Tensor) -> torch.Tensor:
        """Per-sample L1 [B] between the decoded x̂0 and the training image in [-1, 1]; 0 for samples
        above rec_max_timestep (not decoded at all: the VAE decoder backward is the costly part)."""
        t = batch.timesteps
        out = torch.zeros(t.shape[0], device=pred.device)
        keep = (t <= self.options.rec_max_timestep).nonzero().flatten().tolist()
        if not keep:
            return out
        x0 = predicted_x0(self.c, batch.noisy[keep], pred[keep], t[keep])
        vae = self.c.vae
        vae_device = next(vae.parameters()).device
        decoded = vae.decode((x0 / self.c.vae_scale).to(vae_device, vae.dtype)).sample.float()
        images = torch.stack([self.pixels(batch.indices[i], batch.flips[i]) for i in keep]).to(decoded.device)
        err = (decoded - images).abs()
        if batch.weights is not None:  # the attention map weights pixels as it weights latents
            err = err * F.interpolate(batch.weights[keep].to(err.device), size=err.shape[-2:], mode="nearest")
        per_sample = err.mean(dim=(1, 2, 3)).to(pred.device)
        if self.options.rec_timestep_weight == "alpha":
            alpha = self.c.scheduler.alphas_cumprod.to(pred.device)[t[keep]].float()
            per_sample = per_sample * alpha
        return out.index_put((torch.tensor(keep, device=pred.device),), per_sample)
