"""Scores of a toy model: does it draw what trained captions say, and how often does a bare init
word already draw a held-out concept (the baseline an embedding must beat). Images come from the
project's one sampler (toy/sample.py), so these figures and the fidelity benchmark's mean the same."""
from __future__ import annotations

import numpy as np

from .classifier import classify, fraction_of
from .concepts import HELD_OUT, Concept
from .sample import SAMPLE_SEED, draw, sample_prompts
from .scenes import COLOURS, FRAMES, SHAPES


def evaluation_prompts(n: int, rng: np.random.Generator) -> tuple[list[str], list[tuple[str, str]]]:
    """Captions of the kind the model was trained on (named, non-held-out pairings), each pairing
    equally often."""
    pairs = [(c, s) for c in COLOURS for s in SHAPES if (c, s) not in HELD_OUT]
    picks = [pairs[i % len(pairs)] for i in rng.permutation(max(n, len(pairs)))[:n]]
    prompts = [FRAMES[int(rng.integers(len(FRAMES)))].format(f"{c} {s}") for c, s in picks]
    return prompts, picks


def caption_accuracy(c, n: int, *, seed: int = 1234, sampler_steps: int = 20, guidance: float = 5.0) -> dict:
    """Colour, shape and joint accuracy of the classifier on images drawn from trained captions.
    `c`: the model's Components (toy/model.py's toy_components for bare modules)."""
    prompts, truths = evaluation_prompts(n, np.random.default_rng(seed))
    images = draw(c, prompts, [""] * n, {}, seed=seed, steps=sampler_steps, guidance=guidance)
    preds = [classify(im) for im in images]
    return {"colour": sum(p.colour == c for p, (c, _) in zip(preds, truths)) / n,
            "shape": sum(p.shape == s for p, (_, s) in zip(preds, truths)) / n,
            "both": sum(p.matches(c, s) for p, (c, s) in zip(preds, truths)) / n}


def init_word_rate(c, concept: Concept, n: int, *, seed: int = SAMPLE_SEED, sampler_steps: int = 20,
                   guidance: float = 5.0) -> float:
    """Share of images drawn from template prompts with the bare init word ("a photo of a star")
    that the classifier reads as the concept: with the default seed, the fidelity benchmark's
    baseline images."""
    images = draw(c, sample_prompts(concept.init_word, n, seed), [""] * n, {}, seed=seed, steps=sampler_steps,
                  guidance=guidance)
    return fraction_of(images, concept.colour, concept.shape)
