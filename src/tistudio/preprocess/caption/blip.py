"""BLIP captions through transformers, from a local folder only (HF_HUB_OFFLINE is set by the CLI),
e.g. a copy of Salesforce/blip-image-captioning-base saved with `save_pretrained`."""
from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from ...errors import TIStudioError, first_line
from ..options import BlipOptions

HINT = ("give a local BLIP captioning folder (config.json, model weights, preprocessor and tokenizer "
        "files), e.g. Salesforce/blip-image-captioning-base saved with save_pretrained")


class BlipCaptioner:
    def __init__(self, folder: Path, options: BlipOptions):
        folder = Path(folder)
        config = folder / "config.json"
        if not folder.is_dir():
            raise TIStudioError(f"--blip {folder}: folder not found; {HINT}")
        if not config.is_file():
            raise TIStudioError(f"--blip {folder}: no config.json in it; {HINT}")
        try:
            model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
        except (ValueError, UnicodeDecodeError):
            model_type = None
        if model_type != "blip":
            raise TIStudioError(f"--blip {folder}: config.json says model_type={model_type!r}, not 'blip'; {HINT}")

        from transformers import BlipForConditionalGeneration, BlipProcessor

        try:
            self.processor = BlipProcessor.from_pretrained(str(folder))
            self.model = BlipForConditionalGeneration.from_pretrained(str(folder)).eval()
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise TIStudioError(f"--blip {folder}: cannot load it ({first_line(exc)}); {HINT}") from None
        self.options = options

    def __call__(self, rgb: Image.Image) -> str:
        import torch

        inputs = self.processor(images=rgb, return_tensors="pt")
        with torch.no_grad():
            ids = self.model.generate(pixel_values=inputs["pixel_values"], num_beams=self.options.num_beams,
                                      min_length=self.options.min_length, max_length=self.options.max_length,
                                      do_sample=False)
        return self.processor.decode(ids[0], skip_special_tokens=True).strip()
