"""The diffusion side of a training step, with family differences hidden: noising, the target
(noise for epsilon models, velocity for v-prediction), the UNet call (SDXL's added conditioning),
per-sample losses so masks and weights apply outside, and x̂0 for reconstruction losses."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .components import Components
from .conditioning import Conditioning


def noisy_and_target(c: Components, latents: torch.Tensor, noise: torch.Tensor, t: torch.Tensor):
    noisy = c.scheduler.add_noise(latents, noise, t)
    target = noise if c.prediction == "epsilon" else c.scheduler.get_velocity(latents, noise, t)
    return noisy, target


def size_ids(height: int, width: int, n: int) -> torch.Tensor:
    """SDXL micro-conditioning: original size, crop top-left, target size, all the fixed training
    size (--no-buckets; with buckets each image's true values come from data/buckets.Placement)."""
    return torch.tensor([[height, width, 0, 0, height, width]], dtype=torch.float32).repeat(n, 1)


def predict(c: Components, noisy: torch.Tensor, t: torch.Tensor, cond: Conditioning,
            pixel_size: tuple[int, int], time_ids: torch.Tensor | None = None) -> torch.Tensor:
    """UNet output in fp32 whatever the weights' dtype. noisy: [B,4,h,w]; context: [B,L,D];
    time_ids: SDXL's [B,6] size ids per sample, by default the fixed `pixel_size` for all."""
    dtype = c.unet.dtype
    device = noisy.device
    extra = {}
    if c.family.needs_pooled:
        extra["added_cond_kwargs"] = {
            "text_embeds": cond.pooled.to(device, dtype),
            "time_ids": (size_ids(*pixel_size, noisy.shape[0]) if time_ids is None else time_ids).to(device, dtype),
        }
    out = c.unet(noisy.to(dtype), t.to(device), encoder_hidden_states=cond.context.to(dtype), **extra)
    return out.sample.float()


def per_sample_mse(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error per sample [B]; `weight` [B,1,h,w] scales each latent pixel (attention or
    alpha maps) and the mean is taken over the weighted pixels."""
    err = F.mse_loss(pred, target.float(), reduction="none")
    if weight is not None:
        err = err * weight
    return err.mean(dim=(1, 2, 3))


def per_sample_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
                    kind: str = "mse", delta: float = 0.1) -> torch.Tensor:
    """Per-sample loss [B] of the given kind, weighted and averaged as per_sample_mse: "mse" e²;
    "l1" |e|; "huber" e²/(2δ) where |e| < δ and |e| − δ/2 beyond (PyTorch's smooth-L1 with beta δ):
    quadratic for small errors, L1-like for outliers, with the tails' gradient independent of δ."""
    if kind == "mse":
        return per_sample_mse(pred, target, weight)
    target = target.float()
    if kind == "l1":
        err = F.l1_loss(pred, target, reduction="none")
    elif kind == "huber":
        err = F.smooth_l1_loss(pred, target, reduction="none", beta=delta)
    else:
        raise ValueError(f"unknown loss {kind!r}")
    if weight is not None:
        err = err * weight
    return err.mean(dim=(1, 2, 3))


def predicted_x0(c: Components, noisy: torch.Tensor, pred: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x̂0 from the model output: eps-models x̂0 = (x_t − √(1−ᾱ)·ε)/√ᾱ; v-models x̂0 = √ᾱ·x_t − √(1−ᾱ)·v."""
    alpha = c.scheduler.alphas_cumprod.to(noisy.device)[t].view(-1, 1, 1, 1).float()
    if c.prediction == "epsilon":
        return (noisy.float() - (1 - alpha).sqrt() * pred) / alpha.sqrt()
    return alpha.sqrt() * noisy.float() - (1 - alpha).sqrt() * pred
