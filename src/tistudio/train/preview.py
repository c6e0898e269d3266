"""Preview images during training: a fixed prompt and seed, so images at different steps compare."""
from __future__ import annotations

from pathlib import Path

import torch

from ..data.prompts import fill, process_tags
from ..events import Previewed
from ..generate.sample import GenerateOptions, generate, save_png
from ..models.vae import vae_on
from .objectives.hypernetwork import TrainableHypernetwork, text_encoders_on
from .preview_prompts import PreviewPrompt, per_embedding, preview_grid


def preview_prompt(s, name: str | None = None) -> str:
    """--preview-prompt, or the first template line filled with the caption of the first image that
    trains embedding `name` (default: the first embedding, whose first image is the dataset's first)."""
    if s.cfg.preview_prompt:
        return s.cfg.preview_prompt
    first = s.objective.embeddings[0].name
    name = name or first
    images = s.cache.images
    owners = s.concepts.names_of(range(len(images)), first) if s.concepts else []
    caption = process_tags(images[owners.index(name) if name in owners else 0].caption, rng=None) if images else ""
    return fill(s.prompts.lines[0], name, caption)


def embedding_cells(s) -> tuple[PreviewPrompt, ...]:
    """Several embeddings without --preview-prompts: the preview is a grid of one cell per embedding
    (docs/multi-embedding.md); () for one embedding (or DreamArtist's pair): the single image."""
    names = [e.name for e in s.objective.embeddings]
    if s.cfg.method != "ti" or len(names) < 2:
        return ()
    if s.cfg.preview_prompt:
        return per_embedding((PreviewPrompt(s.cfg.preview_prompt, 0),), names)
    return tuple(PreviewPrompt(preview_prompt(s, n), 0) for n in names)


def negative_name(s) -> str:
    """DreamArtist's negative embedding ("" for other methods): its place is the negative prompt."""
    negative = getattr(s.objective, "negative", None)
    return negative.name if negative else ""


def preview_negative(s) -> str:
    """--preview-negative, led by DreamArtist's negative embedding."""
    return ", ".join(p for p in (negative_name(s), s.cfg.preview_negative) if p)


def write_preview(s, step: int, shown: dict) -> Path:
    """The single preview (RUN/images), or with --preview-prompts a grid of them (RUN/previews).
    `s`: the run's Setup; `shown`: {name: vectors} to preview (TrainState.output_vectors, the EMA
    average when there is one)."""
    cfg = s.cfg
    width, height = s.cache.preview_size(s.width, s.height)  # with buckets, the most common one
    options = GenerateOptions(prompt=preview_prompt(s), negative_prompt=preview_negative(s),
                              sampler=cfg.preview_sampler, steps=cfg.preview_steps, cfg=cfg.preview_cfg,
                              seed=cfg.preview_seed, width=width, height=height)
    cells = s.preview_prompts or embedding_cells(s)
    if cells:
        image = preview_grid(cells, options, s.objective.embeddings[0].name,
                             lambda o: sample_preview(s, step, o, shown), negative_name(s))
    else:
        image = sample_preview(s, step, options, shown)
    path = save_png(image, s.run.preview_grid(step) if s.preview_prompts else s.run.preview(step))
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


def sample_preview(s, step: int, options: GenerateOptions, shown: dict):
    """One preview image for `options` with the vectors `shown` (output_vectors)."""
    cfg = s.cfg
    vectors = {name: tuple(v.detach() for v in vs) for name, vs in shown.items()}
    trained, networks = s.objective.embeddings[0], []
    hyper = isinstance(trained, TrainableHypernetwork)
    if hyper:  # no vectors to put in the prompt: the (averaged) hypernetwork goes on the UNet
        networks, vectors = [(trained.snapshot(step, vectors=shown[trained.name]), 1.0)], {}
    with torch.no_grad(), vae_on(s.c, s.device), \
            text_encoders_on(s.c, s.device if hyper and s.objective.offloaded else None):
        return generate(s.c, options, vectors, clip_skip=cfg.model.clip_skip, hypernetworks=networks)[0]
