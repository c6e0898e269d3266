"""Preview images during training: a fixed prompt and seed, so images at different steps compare."""
from __future__ import annotations

from pathlib import Path

import torch

from ..data.prompts import fill, process_tags
from ..events import Previewed
from ..generate.sample import GenerateOptions, generate, save_png
from .objectives.hypernetwork import TrainableHypernetwork, text_encoders_on


def preview_prompt(s) -> str:
    """--preview-prompt, or the first template line filled with the first image's caption."""
    if s.cfg.preview_prompt:
        return s.cfg.preview_prompt
    name = s.objective.embeddings[0].name
    caption = process_tags(s.cache.records[0].caption, rng=None) if s.cache.records else ""
    return fill(s.prompts.lines[0], name, caption)


def preview_negative(s) -> str:
    """--preview-negative, led by DreamArtist's negative embedding: its place is the negative prompt."""
    negative = getattr(s.objective, "negative", None)
    return ", ".join(p for p in (negative.name if negative else "", s.cfg.preview_negative) if p)


def write_preview(s, step: int, shown: dict) -> Path:
    """`s`: the run's Setup; `shown`: {name: vectors} to preview (TrainState.output_vectors, the EMA
    average when there is one)."""
    cfg = s.cfg
    options = GenerateOptions(prompt=preview_prompt(s), negative_prompt=preview_negative(s),
                              sampler=cfg.preview_sampler, steps=cfg.preview_steps, cfg=cfg.preview_cfg,
                              seed=cfg.preview_seed, width=s.width, height=s.height)
    vectors = {name: tuple(v.detach() for v in vs) for name, vs in shown.items()}
    trained, networks = s.objective.embeddings[0], []
    hyper = isinstance(trained, TrainableHypernetwork)
    if hyper:  # no vectors to put in the prompt: the (averaged) hypernetwork goes on the UNet
        networks, vectors = [(trained.snapshot(step, vectors=shown[trained.name]), 1.0)], {}
    vae_device = next(s.c.vae.parameters()).device
    s.c.vae.to(s.device)  # an offloaded VAE comes back only for the decode
    with torch.no_grad(), text_encoders_on(s.c, s.device if hyper and s.objective.offloaded else None):
        image = generate(s.c, options, vectors, clip_skip=cfg.model.clip_skip, hypernetworks=networks)[0]
    s.c.vae.to(vae_device)
    path = save_png(image, s.run.preview(step))
    s.callback(Previewed(step, str(path)))
    if cfg.png_embeddings:
        from ..embedding.formats.a1111_png import save_png_embedding

        s.run.image_embeddings.mkdir(parents=True, exist_ok=True)
        for e in s.objective.embeddings:
            # A1111 triggers a PNG embedding by its stored name, so each snapshot stores its file
            # stem NAME-STEP (as A1111's trainer does): a folder of them gives distinct triggers.
            png = s.run.image_embedding(step, e.name)
            save_png_embedding(e.snapshot(step, name=png.stem, vectors=shown[e.name]), png, image)
    return path
