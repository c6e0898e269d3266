"""The recipe that trains the toy base model from scratch (`tistudio toy train-base`).

Two phases, both on the CPU in well under an hour:
1. the VAE learns to reconstruct a pool of rendered scenes (MSE + a tiny KL, as SD's VAE);
2. the pool is encoded once, then the UNet and the CLIP text encoder learn together to denoise those
   latents given captions, with warm-up + cosine learning rate, min-SNR loss weighting (Hang et al.
   2023, faster convergence) and an EMA of the weights, which is what gets saved.
While it trains, the EMA model draws images for trained captions and the classifier scores them.
"""
from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..atomic import write_text
from .classifier import classify
from .concepts import base_training_caption, base_training_scene
from .evaluate import caption_accuracy
from .model import (ToyArch, build_scheduler, build_text_encoder, build_unet, build_vae,
                    save_toy_model, toy_components)
from .scenes import COLOURS, Scene, render


@dataclass(frozen=True)
class BaseRecipe:
    arch: ToyArch = field(default_factory=ToyArch)
    seed: int = 0
    pool: int = 20000            # scenes rendered and encoded once; captions are drawn per step
    vae_steps: int = 600
    vae_batch: int = 32
    vae_lr: float = 2e-3
    steps: int = 5000
    batch: int = 64
    lr: float = 1e-3
    warmup: int = 300
    ema_decay: float = 0.999
    min_snr_gamma: float = 5.0
    eval_every: int = 500
    eval_n: int = 64
    eval_sampler_steps: int = 20
    guidance: float = 5.0
    init_from: str | None = None  # a saved toy model to keep training (its VAE is kept as it is)
    threads: int = 1            # 2 threads on 2 shared cores spin against other jobs: 4x slower


def lr_at(step: int, r: BaseRecipe) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak."""
    if step < r.warmup:
        return r.lr * (step + 1) / r.warmup
    progress = (step - r.warmup) / max(r.steps - r.warmup, 1)
    return r.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def render_pool(r: BaseRecipe, rng: np.random.Generator) -> tuple[list[Scene], torch.Tensor]:
    scenes = [base_training_scene(rng) for _ in range(r.pool)]
    pixels = np.stack([np.asarray(render(s, r.arch.image_size)) for s in scenes])
    return scenes, torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()   # uint8 [N, 3, H, W]


def as_unit(pixels: torch.Tensor) -> torch.Tensor:
    return pixels.float() / 127.5 - 1.0


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[B, 3, H, W] in [-1, 1] -> [B, H, W, 3] uint8."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()


def token_ids(tokenizer, prompts: list[str]) -> torch.Tensor:
    """[B, 77] ids, padded with <|endoftext|> as SD1 does."""
    return tokenizer(prompts, padding="max_length", max_length=77, truncation=True,
                     return_tensors="pt").input_ids


def train_vae(vae, pixels: torch.Tensor, r: BaseRecipe, rng: np.random.Generator, log: Callable) -> dict:
    opt = torch.optim.AdamW(vae.parameters(), lr=r.vae_lr, weight_decay=0.0)
    vae.train()
    started = time.time()
    for step in range(r.vae_steps):
        for g in opt.param_groups:
            g["lr"] = r.vae_lr * min(1.0, (step + 1) / 50) * (0.1 if step > 0.8 * r.vae_steps else 1.0)
        x = as_unit(pixels[rng.integers(len(pixels), size=r.vae_batch)])
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample()).sample
        loss = torch.nn.functional.mse_loss(recon, x) + 1e-6 * posterior.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == r.vae_steps - 1:
            log(f"vae step {step} loss {loss.item():.5f} {time.time() - started:.0f}s")
    vae.eval()
    with torch.no_grad():
        idx = np.arange(min(256, len(pixels)))
        recon = vae.decode(vae.encode(as_unit(pixels[idx])).latent_dist.mean).sample
    truth = [classify(np.asarray(p)) for p in pixels[idx].permute(0, 2, 3, 1).numpy()]
    got = [classify(im) for im in to_uint8(recon)]
    acc = sum(a.matches(b.colour, b.shape) for a, b in zip(got, truth)) / len(idx)
    log(f"vae reconstructions classified like their originals: {acc:.1%}")
    return {"vae_recon_accuracy": acc, "vae_final_loss": loss.item()}


@torch.no_grad()
def encode_pool(vae, pixels: torch.Tensor, measure_scale: bool = True) -> torch.Tensor:
    """Posterior means [N, 4, h, w], multiplied by the VAE's scaling factor, which a new VAE gets
    here so that latents have unit variance (as SD's 0.18215 does for its VAE)."""
    means = torch.cat([vae.encode(as_unit(pixels[i:i + 256])).latent_dist.mean
                       for i in range(0, len(pixels), 256)])
    if measure_scale:
        vae.register_to_config(scaling_factor=float(1.0 / means.std()))
    return means * vae.config.scaling_factor


def _min_snr_weights(scheduler, t: torch.Tensor, gamma: float) -> torch.Tensor:
    alpha_bar = scheduler.alphas_cumprod[t]
    snr = alpha_bar / (1 - alpha_bar)
    return torch.clamp(snr, max=gamma) / snr    # epsilon prediction


class _TokenCache:
    """Captions repeat constantly; tokenize each distinct one once."""

    def __init__(self, tokenizer):
        self.tokenizer, self.ids = tokenizer, {}

    def __call__(self, captions: list[str]) -> torch.Tensor:
        missing = [c for c in set(captions) if c not in self.ids]
        if missing:
            for c, row in zip(missing, token_ids(self.tokenizer, missing)):
                self.ids[c] = row
        return torch.stack([self.ids[c] for c in captions])


def train_denoiser(parts: dict, latents: torch.Tensor, scenes: list[Scene], r: BaseRecipe,
                   rng: np.random.Generator, log: Callable,
                   on_eval: Callable[[dict, list[dict]], None]) -> tuple[dict, list[dict]]:
    unet, text_encoder, scheduler = parts["unet"], parts["text_encoder"], parts["scheduler"]
    ema = {"unet": copy.deepcopy(unet).eval(), "text_encoder": copy.deepcopy(text_encoder).eval()}
    live = list(unet.parameters()) + list(text_encoder.parameters())
    shadow = list(ema["unet"].parameters()) + list(ema["text_encoder"].parameters())
    opt = torch.optim.AdamW(live, lr=r.lr, weight_decay=0.0)
    tokens = _TokenCache(parts["tokenizer"])
    history, started = [], time.time()
    gen = torch.Generator().manual_seed(r.seed)
    unet.train(), text_encoder.train()
    for step in range(r.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, r)
        idx = rng.integers(len(latents), size=r.batch)
        ids = tokens([base_training_caption(scenes[i], rng) for i in idx])
        x0 = latents[idx]
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (r.batch,), generator=gen)
        xt = scheduler.add_noise(x0, noise, t)
        pred = unet(xt, t, encoder_hidden_states=text_encoder(ids).last_hidden_state).sample
        per_sample = (pred - noise).pow(2).mean(dim=(1, 2, 3))
        loss = (per_sample * _min_snr_weights(scheduler, t, r.min_snr_gamma)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(live, 1.0)
        opt.step()
        decay = min(r.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_lerp_(shadow, live, 1 - decay)
        if step % 100 == 0:
            log(f"step {step} loss {loss.item():.4f} lr {lr_at(step, r):.2e} "
                f"{(time.time() - started) / (step + 1):.2f}s/step")
        if (step + 1) % r.eval_every == 0 or step == r.steps - 1:
            model = toy_components(parts["vae"], ema["unet"], ema["text_encoder"], scheduler, parts["tokenizer"])
            acc = caption_accuracy(model, r.eval_n, sampler_steps=r.eval_sampler_steps, guidance=r.guidance)
            history.append({"step": step + 1, "minutes": (time.time() - started) / 60, **acc})
            log(f"eval step {step + 1}: colour {acc['colour']:.1%} shape {acc['shape']:.1%} "
                f"both {acc['both']:.1%}")
            on_eval(ema, history)
    return ema, history


def _initial_parts(r: BaseRecipe) -> dict:
    from ..models.tokenizer import load_clip_tokenizer
    from .model import load_toy_parts

    if r.init_from:
        vae, unet, text_encoder, scheduler = load_toy_parts(r.init_from)
    else:
        vae, unet, text_encoder, scheduler = (build_vae(r.arch), build_unet(r.arch),
                                              build_text_encoder(r.arch), build_scheduler())
    return {"vae": vae, "unet": unet, "text_encoder": text_encoder, "scheduler": scheduler,
            "tokenizer": load_clip_tokenizer()}


def train_base(r: BaseRecipe, out: str | Path, log: Callable = print) -> dict:
    """Train the toy model (from scratch, or on from `r.init_from`) and save its EMA weights as a
    diffusers folder at `out`."""
    torch.set_num_threads(r.threads)
    # Tiny late-training gradients underflow into denormals, which are ~100x slower on x86 CPUs.
    torch.set_flush_denormal(True)
    torch.manual_seed(r.seed)
    rng = np.random.default_rng(r.seed)
    started = time.time()
    parts = _initial_parts(r)
    scenes, pixels = render_pool(r, rng)
    log(f"rendered {len(scenes)} scenes at {r.arch.image_size}px")
    if r.init_from:
        report = {"init_from": r.init_from}
        latents = encode_pool(parts["vae"], pixels, measure_scale=False)
    else:
        report = train_vae(parts["vae"], pixels, r, rng, log)
        latents = encode_pool(parts["vae"], pixels)
    parts["vae"].requires_grad_(False)
    log(f"encoded pool to latents {tuple(latents.shape[1:])}, scaling factor "
        f"{parts['vae'].config.scaling_factor:.4f}")
    report["vae_minutes"] = (time.time() - started) / 60

    def save(ema: dict, history: list[dict]) -> None:
        # Saved at every evaluation, so a run cut short still leaves its latest model behind.
        folder = save_toy_model(parts["vae"], ema["unet"], ema["text_encoder"], parts["scheduler"], out)
        report.update(recipe=asdict(r), palette=COLOURS, history=history, minutes=(time.time() - started) / 60,
                      final=history[-1])
        write_text(folder / "toy_training.json", json.dumps(report, indent=2))

    train_denoiser(parts, latents, scenes, r, rng, log, save)
    log(f"saved {out} after {report['minutes']:.1f} min")
    return report
