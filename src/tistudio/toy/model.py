"""The toy model's architecture: standard Stable Diffusion 1.x parts, sized for 32 px on a CPU.

A factor-4 AutoencoderKL turns 32x32 RGB into an 8x8x4 latent; a two-level UNet2DConditionModel
with cross-attention denoises it; a 2-layer CLIPTextModel over the real CLIP vocabulary reads the
prompt. The token table (49408 x width) dominates the file size, hence the narrow text width.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

PAD_ID = 49407  # SD1 pads with <|endoftext|>


@dataclass(frozen=True)
class ToyArch:
    image_size: int = 32
    text_width: int = 48
    text_layers: int = 2
    unet_channels: tuple[int, ...] = (32, 64)
    unet_layers_per_block: int = 1
    vae_channels: tuple[int, ...] = (16, 32, 32)   # three blocks: factor-4 downsampling

    @property
    def latent_size(self) -> int:
        return self.image_size // 2 ** (len(self.vae_channels) - 1)


def build_vae(arch: ToyArch):
    from diffusers import AutoencoderKL

    n = len(arch.vae_channels)
    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4,
                         block_out_channels=arch.vae_channels, layers_per_block=1, norm_num_groups=16,
                         down_block_types=("DownEncoderBlock2D",) * n,
                         up_block_types=("UpDecoderBlock2D",) * n, sample_size=arch.image_size)


def build_text_encoder(arch: ToyArch):
    from transformers import CLIPTextConfig, CLIPTextModel

    w = arch.text_width
    return CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=w, intermediate_size=4 * w, num_hidden_layers=arch.text_layers,
        num_attention_heads=4, max_position_embeddings=77, projection_dim=w, bos_token_id=49406,
        eos_token_id=49407, pad_token_id=PAD_ID, hidden_act="quick_gelu"))


def build_unet(arch: ToyArch):
    from diffusers import UNet2DConditionModel

    n = len(arch.unet_channels)
    # Cross-attention at every level but the coarsest, as in SD1 (which also skips its deepest level).
    return UNet2DConditionModel(
        sample_size=arch.latent_size, in_channels=4, out_channels=4,
        layers_per_block=arch.unet_layers_per_block, block_out_channels=arch.unet_channels,
        norm_num_groups=16, cross_attention_dim=arch.text_width, attention_head_dim=8,
        down_block_types=("CrossAttnDownBlock2D",) * (n - 1) + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n - 1))


def build_scheduler():
    from diffusers import DDPMScheduler

    # DDPM's linear schedule ends at alpha_bar ~ 4e-5: on an 8x8 latent SD's scaled-linear schedule
    # leaves enough signal at t=999 that samples starting from pure noise drift in mean colour.
    return DDPMScheduler(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02,
                         beta_schedule="linear", prediction_type="epsilon", clip_sample=False)


def toy_components(vae, unet, text_encoder, scheduler, tokenizer=None):
    """The bare modules as the Components an SD1 model loads into (what the sampler and the saver take),
    so the base recipe can score and save its EMA weights without a folder round trip."""
    from ..models.components import Components
    from ..models.family import get_family
    from ..models.tokenizer import load_clip_tokenizer

    return Components(family=get_family("sd1"), prediction="epsilon", tokenizer=tokenizer or load_clip_tokenizer(),
                      text_encoders=[text_encoder], pad_ids=[PAD_ID], unet=unet, vae=vae, scheduler=scheduler,
                      name="toy")


def save_toy_model(vae, unet, text_encoder, scheduler, dest: str | Path) -> Path:
    """Write a diffusers SD1 folder, replacing `dest` only once the new folder is complete."""
    from ..models.diffusers_folder import save_diffusers_folder

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        save_diffusers_folder(toy_components(vae, unet, text_encoder, scheduler), tmp)
        old = dest.with_name(f".{dest.name}.old")
        if dest.exists():
            os.replace(dest, old)
        os.replace(tmp, dest)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def load_toy_parts(folder: str | Path):
    """(vae, unet, text_encoder, scheduler) from a folder written by `save_toy_model`."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel

    folder = Path(folder)
    return (AutoencoderKL.from_pretrained(folder / "vae"),
            UNet2DConditionModel.from_pretrained(folder / "unet"),
            CLIPTextModel.from_pretrained(folder / "text_encoder"),
            DDPMScheduler.from_pretrained(folder / "scheduler"))
