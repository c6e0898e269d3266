"""A batched DDIM sampler with classifier-free guidance, used to score the toy model while it trains.

It works on the bare modules (no Components, no embeddings) so the training recipe can score its
EMA weights cheaply; user-facing generation lives in tistudio.generate.
"""
from __future__ import annotations

import numpy as np
import torch


def token_ids(tokenizer, prompts: list[str]) -> torch.Tensor:
    """[B, 77] ids, padded with <|endoftext|> as SD1 does."""
    return tokenizer(prompts, padding="max_length", max_length=77, truncation=True,
                     return_tensors="pt").input_ids


@torch.no_grad()
def denoise(unet, vae, scheduler, context: torch.Tensor, latents: torch.Tensor, *, steps: int = 20,
            guidance: float = 5.0, on_step=None) -> list[np.ndarray]:
    """Batched DDIM with classifier-free guidance. context: [2B, L, D], the B conditional rows then
    the B unconditional ones; latents: [B, C, h, w] starting noise. uint8 RGB arrays out."""
    from diffusers import DDIMScheduler

    # The same spacing tistudio.generate uses ("leading", offset 1), so scores carry over.
    ddim = DDIMScheduler.from_config(scheduler.config, steps_offset=1, timestep_spacing="leading")
    ddim.set_timesteps(steps)
    dtype = unet.dtype
    context = context.to(dtype)
    for t in ddim.timesteps:
        eps = unet(torch.cat([latents, latents]).to(dtype), t, encoder_hidden_states=context).sample.float()
        cond, uncond = eps.chunk(2)
        latents = ddim.step(uncond + guidance * (cond - uncond), t, latents).prev_sample
        if on_step:
            on_step(latents.shape[0])
    images = vae.decode((latents / vae.config.scaling_factor).to(vae.dtype)).sample.float()
    return [np.asarray(a) for a in to_uint8(images)]


@torch.no_grad()
def sample_images(vae, unet, text_encoder, scheduler, tokenizer, prompts: list[str], *, steps: int = 20,
                  guidance: float = 5.0, seed: int = 0) -> list[np.ndarray]:
    """uint8 RGB arrays [H, W, 3], one per prompt."""
    n = len(prompts)
    context = text_encoder(token_ids(tokenizer, list(prompts) + [""] * n)).last_hidden_state
    size = unet.config.sample_size
    gen = torch.Generator().manual_seed(seed)
    latents = torch.randn(n, unet.config.in_channels, size, size, generator=gen)
    return denoise(unet, vae, scheduler, context, latents, steps=steps, guidance=guidance)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[B, 3, H, W] in [-1, 1] -> [B, H, W, 3] uint8."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
