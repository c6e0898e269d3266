"""The loaded parts of a Stable Diffusion model, whatever file or folder they came from."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .family import FamilySpec


def latent_factor(block_out_channels) -> int:
    """How many pixels one latent cell spans per side: 2 per VAE down block after the first."""
    return 2 ** (len(block_out_channels) - 1)


def native_resolution(sample_size, factor: int, family_resolution: int) -> int:
    """The side a model was made for, from its UNet config's `sample_size` (Components.resolution;
    ModelSource.resolution reads the same from the config files, before any weight)."""
    if isinstance(sample_size, (list, tuple)):  # diffusers also allows (height, width); take the longer
        sample_size = max(sample_size)
    return int(sample_size) * factor if isinstance(sample_size, int) and sample_size > 0 else family_resolution


@dataclass
class Components:
    """Everything training and generation need. Text encoders are in the family's encoder order
    (SDXL: CLIP-L then CLIP-G); `pad_ids[i]` is the pad token id of encoder i. All frozen."""

    family: FamilySpec
    prediction: str                   # "epsilon" | "v_prediction"
    tokenizer: object                 # transformers CLIPTokenizer; all SD encoders share one vocabulary
    text_encoders: list[torch.nn.Module]
    pad_ids: list[int]
    unet: torch.nn.Module
    vae: torch.nn.Module
    scheduler: object                 # a diffusers scheduler holding the training noise schedule
    name: str = "model"               # shown in metadata and PNG captions
    short_hash: str | None = None     # 10 hex chars of the model file's sha256 (A1111's sd_checkpoint)
    source: str = ""                  # the path it was loaded from
    extra: dict = field(default_factory=dict)

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(te.get_input_embeddings().weight.shape[1] for te in self.text_encoders)

    @property
    def vae_scale(self) -> float:
        return float(getattr(self.vae.config, "scaling_factor", 0.18215))

    @property
    def vae_factor(self) -> int:
        return latent_factor(self.vae.config.block_out_channels)

    @property
    def resolution(self) -> int:
        """The side the model was made for: its UNet's latent `sample_size` times the VAE factor
        (64 x 8 = 512 for SD1.5, 96 x 8 = 768 for SD2 768-v, 4 x 4 = 32 for the toy model); the
        family's resolution only when the config has none."""
        return native_resolution(getattr(self.unet.config, "sample_size", None), self.vae_factor,
                                 self.family.resolution)

    def freeze(self) -> "Components":
        """No weight gradients anywhere: only embedding vectors ever train."""
        for module in (*self.text_encoders, self.unet, self.vae):
            module.requires_grad_(False)
            module.eval()
        return self
