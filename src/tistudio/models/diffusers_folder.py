"""Write loaded components as a diffusers pipeline folder (model_index.json + one folder per part),
the form `load_model` reads back: the toy model is saved this way, and so are the test models."""
from __future__ import annotations

import json
from pathlib import Path

from .components import Components
from .tokenizer import write_tokenizer_folder


def save_diffusers_folder(c: Components, dest: str | Path) -> Path:
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    sdxl = c.family.name == "sdxl"
    parts = {"unet": c.unet, "vae": c.vae, "text_encoder": c.text_encoders[0]}
    if sdxl:
        parts["text_encoder_2"] = c.text_encoders[1]
    for sub, module in parts.items():
        module.save_pretrained(str(dest / sub), safe_serialization=True)
    c.scheduler.save_pretrained(str(dest / "scheduler"))
    for i, enc in enumerate(c.family.encoders):
        write_tokenizer_folder(dest / ("tokenizer" if i == 0 else "tokenizer_2"), enc.pad_token)
    index = {
        "_class_name": "StableDiffusionXLPipeline" if sdxl else "StableDiffusionPipeline",
        "_diffusers_version": "0.42.0",
        "scheduler": ["diffusers", type(c.scheduler).__name__],
        "text_encoder": ["transformers", type(c.text_encoders[0]).__name__],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    if sdxl:
        index.update(text_encoder_2=["transformers", type(c.text_encoders[1]).__name__],
                     tokenizer_2=["transformers", "CLIPTokenizer"], force_zeros_for_empty_prompt=True)
    else:
        index.update(safety_checker=[None, None], feature_extractor=[None, None],
                     requires_safety_checker=False)
    (dest / "model_index.json").write_text(json.dumps(index, indent=2))
    return dest
