"""Models for benchmarks: full-size SD1.5 / SDXL architectures from the shipped configs with random
weights (no weights exist on this machine), the tiny models, and the toy model when it is present.

Full-size parts are built directly in the target dtype (default dtype switched while constructing),
so a bf16 run never holds an fp32 copy and the process's peak memory is the training peak."""
from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import torch

TESTS = Path(__file__).resolve().parents[1] / "tests"


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype):
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def build_random(family: str, dtype: torch.dtype = torch.float32, seed: int = 0):
    """SD1.5 ("sd1") or SDXL base ("sdxl") with random weights: UNet and text encoders in `dtype`,
    the VAE in fp32 (it only encodes the latent cache)."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from tistudio.models.components import Components
    from tistudio.models.family import get_family
    from tistudio.models.single_file import shipped_config
    from tistudio.models.tokenizer import load_clip_tokenizer

    torch.manual_seed(seed)
    folder = shipped_config(family, "epsilon")
    spec = get_family(family)
    tokenizer = load_clip_tokenizer(pad_token=spec.encoders[0].pad_token)
    subs = ["text_encoder"] + (["text_encoder_2"] if family == "sdxl" else [])
    with default_dtype(dtype):
        encoders = []
        for i, sub in enumerate(subs):
            cfg = CLIPTextConfig.from_dict(json.loads((folder / sub / "config.json").read_text()))
            cls = CLIPTextModelWithProjection if i == 1 else CLIPTextModel
            encoders.append(cls(cfg))
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(str(folder / "unet")))
    vae = AutoencoderKL.from_config(AutoencoderKL.load_config(str(folder / "vae")))
    sched = DDPMScheduler.from_config({**DDPMScheduler.load_config(str(folder / "scheduler")),
                                       "clip_sample": False})
    return Components(family=spec, prediction="epsilon", tokenizer=tokenizer, text_encoders=encoders,
                      pad_ids=[tokenizer.convert_tokens_to_ids(e.pad_token) for e in spec.encoders],
                      unet=unet, vae=vae, scheduler=sched, name=f"random-{family}").freeze()


def build(model: str, dtype: torch.dtype = torch.float32):
    """'tiny-sd1' | 'tiny-sdxl' | 'toy' | 'sd1' | 'sdxl' -> Components (None when absent here)."""
    if model.startswith("tiny-"):
        # The tiny models are a test fixture: the benchmarks reuse its one definition (tests/tiny_models.py)
        # rather than keep a copy, and the package ships neither.
        if str(TESTS) not in sys.path:
            sys.path.insert(0, str(TESTS))
        from tiny_models import build_tiny

        return build_tiny(model.removeprefix("tiny-"))
    if model == "toy":
        from tistudio.errors import TIStudioError
        from tistudio.models.load import load_model
        from tistudio.toy import default_model_path

        try:
            return load_model(default_model_path())
        except TIStudioError:
            return None
    return build_random(model, dtype)
