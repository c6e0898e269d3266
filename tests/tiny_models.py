"""Test helper: tiny random models of each family, built in code over the real CLIP vocabulary.

They prove plumbing (shapes, injection, chunking, loading, saving) in seconds; they cannot learn a
concept. Widths are kept small but every structural feature of the family is present: a factor-8
VAE, cross-attention, SD2's linear projections and v-prediction, SDXL's two encoders and added
time/text conditioning. bench/arch.py builds them too (its "tiny-*" models).
"""
from __future__ import annotations

import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from tistudio.models.components import Components
from tistudio.models.family import get_family
from tistudio.models.tiny_widths import TINY_TEXT_WIDTHS
from tistudio.models.tokenizer import load_clip_tokenizer


def _text_encoder(width: int, with_projection: bool, pad_id: int):
    cfg = CLIPTextConfig(
        vocab_size=49408, hidden_size=width, intermediate_size=2 * width, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=77, projection_dim=width,
        bos_token_id=49406, eos_token_id=49407, pad_token_id=pad_id, hidden_act="quick_gelu",
    )
    cls = CLIPTextModelWithProjection if with_projection else CLIPTextModel
    return cls(cfg)


def _unet(family: str, context: int, pooled: int):
    kwargs = dict(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(16, 32), norm_num_groups=8, cross_attention_dim=context,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), attention_head_dim=4,
    )
    if family == "sd2":
        kwargs.update(use_linear_projection=True)
    if family == "sdxl":
        kwargs.update(use_linear_projection=True, addition_embed_type="text_time",
                      addition_time_embed_dim=8, projection_class_embeddings_input_dim=pooled + 6 * 8)
    return UNet2DConditionModel(**kwargs)


def _vae():
    # Four blocks give the real factor-8 downsampling.
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8, 16, 16),
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1, norm_num_groups=4, sample_size=64,
    )


def _scheduler(prediction: str):
    return DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                         beta_schedule="scaled_linear", prediction_type=prediction, clip_sample=False)


def build_tiny(family: str = "sd1", prediction: str | None = None, seed: int = 0) -> Components:
    spec = get_family(family)
    prediction = prediction or ("v_prediction" if family == "sd2" else "epsilon")
    torch.manual_seed(seed)
    tokenizer = load_clip_tokenizer()
    pad_ids = [tokenizer.convert_tokens_to_ids(e.pad_token) for e in spec.encoders]
    widths = TINY_TEXT_WIDTHS[family]
    encoders = [_text_encoder(w, with_projection=(family == "sdxl" and i == 1), pad_id=pad_ids[i])
                for i, w in enumerate(widths)]
    unet = _unet(family, sum(widths), widths[-1])
    return Components(family=spec, prediction=prediction, tokenizer=tokenizer, text_encoders=encoders,
                      pad_ids=pad_ids, unet=unet, vae=_vae(), scheduler=_scheduler(prediction),
                      name=f"tiny-{family}").freeze()
