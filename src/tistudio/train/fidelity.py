"""Fidelity scores at each evaluation, from images generated with the current vectors.

- CLIP (--eval-clip DIR, a local CLIP model folder): the two scores of the Textual Inversion paper
  (Gal et al. 2022, §5.1). Image-image: mean CLIP cosine between images of "a photo of NAME" and the
  training images (does it look like the concept?). Text-image: mean CLIP cosine between images of
  edited prompts ("a painting of NAME") and those prompts with NAME removed (does the prompt still
  steer the image, or has the embedding taken over?).
- Toy world (--eval-toy "COLOUR SHAPE"): the share of images, drawn as `tistudio bench fidelity`
  draws them (toy caption frames around NAME, DDIM at CFG 5), that the toy world's rule-based
  classifier reads as that colour and shape. Meaningful on the toy model (its
  world is known); on any other model it measures nothing useful. It lives in toy/scorer.py and
  registers itself (`register`), so training never imports the toy world.

CLIP's images use the preview settings (--preview-steps, --preview-cfg, --preview-sampler,
--preview-seed + i) and the previews' size (with buckets the most common bucket, the shape the
embedding mostly learns: BucketedCache.preview_size), so scores at different steps compare and
score what the previews show. The toy scorer draws as the benchmark does, at the toy model's own
size (toy/scorer.py), so its numbers and `tistudio bench fidelity`'s compare.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from ..errors import TIStudioError, first_line
from ..generate.sample import GenerateOptions, sample
from ..models.vae import vae_on

EDIT_PROMPTS = ("a painting of {}", "a photo of {} on the beach", "{} in the snow", "a drawing of {}")


def generate_for_eval(s, prompts: list[str]) -> list:
    """One image per prompt, seed --preview-seed + its position, batched through the one sampler,
    at the previews' size."""
    cfg = s.cfg
    vectors = {name: tuple(v.detach() for v in vs) for name, vs in s.objective.vectors().items()}
    width, height = s.cache.preview_size(s.width, s.height)
    options = GenerateOptions(prompt="", sampler=cfg.preview_sampler, steps=cfg.preview_steps, cfg=cfg.preview_cfg,
                              width=width, height=height)
    with vae_on(s.c, s.device):
        return sample(s.c, options, prompts, [cfg.preview_negative] * len(prompts),
                      [cfg.preview_seed + j for j in range(len(prompts))], vectors, clip_skip=cfg.model.clip_skip)


class ClipScorer:
    def __init__(self, s, folder: str, max_references: int = 8):
        from transformers import CLIPImageProcessor, CLIPModel

        from ..models.tokenizer import ASSET, load_clip_tokenizer

        path = Path(folder)
        if not (path / "config.json").is_file():
            raise TIStudioError(f"--eval-clip {folder}: no config.json there; pass a local CLIP model "
                                "folder (e.g. a saved openai/clip-vit-large-patch14)")
        try:
            self.model = CLIPModel.from_pretrained(str(path), local_files_only=True).eval()
        except (OSError, ValueError) as exc:
            raise TIStudioError(f"--eval-clip {folder}: not a loadable CLIP model ({first_line(exc)})") from None
        # CLIP models share one BPE vocabulary: the folder's tokenizer when it has one, else ours.
        self.tokenizer = load_clip_tokenizer(path if (path / "vocab.json").is_file() else ASSET)
        size = self.model.config.vision_config.image_size
        # CLIP's own preprocessing (shorter side to `size`, bicubic, centre crop, the OpenAI mean and
        # std, which are the processor's defaults), built here rather than read from the hub.
        self.processor = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
        from PIL import Image

        refs = []
        for record in s.concepts.training(s.cache.images)[:max_references]:  # reg images are not the concept
            with Image.open(record.path) as img:
                refs.append(img.convert("RGB"))
        self.references = self._image_features(refs)

    def _pixels(self, images) -> torch.Tensor:
        """[B,3,S,S] pixel values for the CLIP image tower."""
        return self.processor(images=[img.convert("RGB") for img in images], return_tensors="pt").pixel_values

    @staticmethod
    def _unit(features) -> torch.Tensor:
        # transformers 5 may return a model output instead of the bare projected tensor.
        features = features if torch.is_tensor(features) else features.pooler_output
        return torch.nn.functional.normalize(features.float(), dim=-1)

    @torch.no_grad()
    def _image_features(self, images) -> torch.Tensor:
        return self._unit(self.model.get_image_features(pixel_values=self._pixels(images)))

    @torch.no_grad()
    def _text_features(self, texts: list[str]) -> torch.Tensor:
        limit = self.model.config.text_config.max_position_embeddings
        tok = self.tokenizer(texts, padding="max_length", truncation=True, max_length=limit, return_tensors="pt")
        return self._unit(self.model.get_text_features(input_ids=tok.input_ids, attention_mask=tok.attention_mask))

    def __call__(self, s) -> dict[str, float]:
        name, n = s.objective.embeddings[0].name, s.cfg.eval_samples
        likeness = self._image_features(generate_for_eval(s, [f"a photo of {name}"] * n))
        edits = [EDIT_PROMPTS[j % len(EDIT_PROMPTS)] for j in range(n)]
        edited = self._image_features(generate_for_eval(s, [e.format(name) for e in edits]))
        texts = self._text_features([" ".join(e.format("").split()) for e in edits])
        return {"clip_image": float((likeness @ self.references.T).mean()),
                "clip_text": float((edited * texts).sum(dim=-1).mean())}


# Scorers defined above this layer (the toy world's classifier) register themselves here:
# config field -> factory(session, field value). Training never imports them.
REGISTERED: dict[str, Callable] = {}


def register(field: str, factory: Callable) -> None:
    REGISTERED[field] = factory


# The scorers that register themselves (toy/scorer.py), by their config field.
_REGISTRABLE = ("eval_toy",)


def asked_for(cfg) -> bool:
    """Whether this run scores at its evaluations: every scorer generates images (so decodes)."""
    return bool(cfg.val_every and (cfg.eval_clip or any(getattr(cfg, f) for f in _REGISTRABLE)))


def scorers(s) -> list:
    """The fidelity scorers this run asked for (callables s -> {score name: value})."""
    out = []
    if s.cfg.eval_clip:
        out.append(ClipScorer(s, s.cfg.eval_clip))
    for field in _REGISTRABLE:
        value = getattr(s.cfg, field)
        if value and field not in REGISTERED:
            raise TIStudioError(f"--{field.replace('_', '-')}: its scorer is not loaded; train through "
                                "tistudio.api.train (or import tistudio.toy.scorer first)")
        if value:
            out.append(REGISTERED[field](s, value))
    return out
