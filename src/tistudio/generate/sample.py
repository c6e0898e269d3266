"""txt2img with embeddings, the one sampler of the project (generate, previews, fidelity scores and
the toy benchmark all draw here): our prompt encoding (so any number of embeddings work in prompt
and negative prompt) handed to diffusers' pipelines as prompt embeddings, which bring the samplers.
Images go through the pipeline --batch-size at a time, each with a torch generator of its own seed,
so image i is the same image (up to float rounding) whatever the batch it was drawn in.
Hypernetworks (`<hypernet:name:mult>` in the prompt, resolved by the caller) are on the UNet for
the sampling only; their tags are removed from the encoded prompt and kept in the PNG's text."""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Callable, Mapping, Sequence

import torch

from ..errors import TIStudioError
from ..hypernetwork.apply import applied, parse_tags
from ..models.components import Components
from ..models.conditioning import PromptEncoder
from ..models.footprint import check_fits
from .files import resolve_seed

SAMPLER_CLASSES = {
    "euler_a": ("EulerAncestralDiscreteScheduler", "Euler a"),
    "euler": ("EulerDiscreteScheduler", "Euler"),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", "DPM++ 2M"),
    "ddim": ("DDIMScheduler", "DDIM"),
}


@dataclass(frozen=True)
class GenerateOptions:
    prompt: str
    negative_prompt: str = ""
    sampler: str = "euler_a"
    steps: int = 20
    cfg: float = 7.0
    seed: int = 0
    width: int | None = None
    height: int | None = None
    n: int = 1
    batch_size: int = 4       # images per pipeline call; the last call takes what is left

    def __post_init__(self):
        if self.sampler not in SAMPLER_CLASSES:
            raise TIStudioError(f"--sampler {self.sampler!r}: use one of {', '.join(SAMPLER_CLASSES)}")
        for opt, v in (("--width", self.width), ("--height", self.height)):
            if v is not None and (v <= 0 or v % 8):
                raise TIStudioError(f"{opt} {v}: must be a positive multiple of 8")
        if self.steps < 1 or self.n < 1 or self.batch_size < 1:
            raise TIStudioError("--steps, --n and --batch-size must be at least 1")
        if self.seed < -1:
            raise TIStudioError(f"--seed {self.seed}: use -1 (a random seed) or 0 or more")


def _pipeline(c: Components, sampler: str):
    import diffusers

    # SD's own sampling configs use "leading" spacing with offset 1.
    scheduler = getattr(diffusers, SAMPLER_CLASSES[sampler][0]).from_config(
        c.scheduler.config, steps_offset=1, timestep_spacing="leading")
    if c.family.name == "sdxl":
        return diffusers.StableDiffusionXLPipeline(
            vae=c.vae, text_encoder=c.text_encoders[0], text_encoder_2=c.text_encoders[1],
            tokenizer=c.tokenizer, tokenizer_2=c.tokenizer, unet=c.unet, scheduler=scheduler)
    return diffusers.StableDiffusionPipeline(
        vae=c.vae, text_encoder=c.text_encoders[0], tokenizer=c.tokenizer, unet=c.unet,
        scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def _infotext_value(text: str) -> str:
    """A1111 quotes a value holding a separator as a JSON string, so readers split fields right."""
    return json.dumps(text) if any(ch in text for ch in ",:\n") else text


def parameters_text(o: GenerateOptions, width: int, height: int, seed: int, c: Components,
                    ti_hashes: Mapping[str, str] | None = None) -> str:
    """A1111's "parameters" text chunk, so other tools read our PNGs' settings. `ti_hashes`: the
    embeddings the prompts used -> their files' short hashes (A1111's `TI hashes` field)."""
    lines = [o.prompt]
    if o.negative_prompt:
        lines.append(f"Negative prompt: {o.negative_prompt}")
    fields = [f"Steps: {o.steps}", f"Sampler: {SAMPLER_CLASSES[o.sampler][1]}", f"CFG scale: {o.cfg:g}",
              f"Seed: {seed}", f"Size: {width}x{height}"]
    if c.short_hash:
        fields.append(f"Model hash: {c.short_hash}")
    fields.append(f"Model: {c.name}")
    if ti_hashes:
        # A1111 drops ':' and ',' from the names so the field still splits.
        pairs = ", ".join(f"{name.replace(':', '').replace(',', '')}: {h}" for name, h in ti_hashes.items())
        fields.append(f"TI hashes: {_infotext_value(pairs)}")
    lines.append(", ".join(fields))
    return "\n".join(lines)


def generate(c: Components, options: GenerateOptions, vectors: Mapping[str, Sequence[torch.Tensor]] | None = None,
             clip_skip: int = 1, progress: bool = False,
             callback: Callable[[int, int], None] | None = None,
             ti_hashes: Mapping[str, str] | None = None, hypernetworks: Sequence = ()) -> list:
    """Images (PIL, with `.info["parameters"]`) for seeds seed, seed+1, ... seed+n-1 (resolve
    `--seed -1` first: generate/files.py). `hypernetworks`: [(Hypernetwork, strength)] applied in
    order (hypernetwork/apply.py)."""
    o = options
    first_seed = resolve_seed(o.seed)
    return sample(c, o, [o.prompt] * o.n, [o.negative_prompt] * o.n, [first_seed + i for i in range(o.n)],
                  vectors, clip_skip=clip_skip, progress=progress, callback=callback, ti_hashes=ti_hashes,
                  hypernetworks=hypernetworks)


@torch.no_grad()
def sample(c: Components, options: GenerateOptions, prompts: Sequence[str], negatives: Sequence[str],
           seeds: Sequence[int], vectors: Mapping[str, Sequence[torch.Tensor]] | None = None, *,
           clip_skip: int = 1, progress: bool = False, callback: Callable[[int, int], None] | None = None,
           ti_hashes: Mapping[str, str] | None = None, hypernetworks: Sequence = ()) -> list:
    """One image per (prompt, negative prompt, seed), `options` giving the sampler, steps, CFG, size
    and batch size (its own prompt, negative prompt, seed and n are not read). PIL images, each with
    its `.info["parameters"]`; `callback(done, total)` after each pipeline call. Prompts of one call
    share its longest prompt's count of 75-token chunks (as A1111's batches do), so image i is the
    same alone or in a batch when no prompt beside it is longer than 75 tokens."""
    if not len(prompts) == len(negatives) == len(seeds):
        raise ValueError(f"sample: {len(prompts)} prompts, {len(negatives)} negatives, {len(seeds)} seeds")
    o = options
    width = o.width or c.resolution
    height = o.height or c.resolution
    batch = min(o.batch_size, len(prompts))
    check_fits(c, width, height, batch, c.unet.device, training=False)
    encoder = PromptEncoder(c, clip_skip)
    pipe = _pipeline(c, o.sampler)
    pipe.set_progress_bar_config(disable=not progress)
    dtype = c.unet.dtype
    images = []
    for at in range(0, len(prompts), batch):
        texts = [parse_tags(p)[0] for p in prompts[at:at + batch]]
        n = len(texts)
        # One call for both prompts so they share a chunk count (the pipeline needs equal shapes).
        cond = encoder.encode([*texts, *negatives[at:at + n]], vectors)
        kwargs = dict(prompt_embeds=cond.context[:n].to(dtype), negative_prompt_embeds=cond.context[n:].to(dtype))
        if cond.pooled is not None:
            kwargs.update(pooled_prompt_embeds=cond.pooled[:n].to(dtype),
                          negative_pooled_prompt_embeds=cond.pooled[n:].to(dtype))
        generators = [torch.Generator(device="cpu").manual_seed(seed) for seed in seeds[at:at + n]]
        with applied(c.unet, hypernetworks):
            out = pipe(num_inference_steps=o.steps, guidance_scale=o.cfg, width=width, height=height,
                       generator=generators, output_type="pil", **kwargs)
        for image, prompt, negative, seed in zip(out.images, prompts[at:at + n], negatives[at:at + n],
                                                 seeds[at:at + n]):
            shown = replace(o, prompt=prompt, negative_prompt=negative)
            image.info["parameters"] = parameters_text(shown, width, height, seed, c, ti_hashes)
            images.append(image)
        if callback:
            callback(len(images), len(prompts))
    return images


def save_png(image, path):
    """Write a PNG with its generation parameters in a tEXt chunk, atomically."""
    from PIL import PngImagePlugin

    from ..atomic import write_with

    info = PngImagePlugin.PngInfo()
    if "parameters" in image.info:
        info.add_text("parameters", image.info["parameters"])
    return write_with(path, lambda tmp: image.save(tmp, format="PNG", pnginfo=info))
