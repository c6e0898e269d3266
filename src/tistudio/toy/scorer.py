"""--eval-toy "COLOUR SHAPE": the toy classifier's fidelity at each evaluation, registered with the
training layer's scorers (train/fidelity.py), which never import the toy world themselves."""
from __future__ import annotations

from ..models.vae import vae_on
from ..train import fidelity
from .classifier import accuracy
from .concepts import parse_concept
from .sample import draw, sample_prompts


class ToyScorer:
    def __init__(self, s, spec: str):
        self.concept = parse_concept(spec)

    def __call__(self, s) -> dict[str, float]:
        # The fidelity benchmark's own prompts, seeds and sampler settings (toy/sample.py), so the
        # numbers logged here and `tistudio bench fidelity` mean the same thing.
        n = s.cfg.eval_samples
        name = s.objective.embeddings[0].name
        negative = getattr(s.objective, "negative", None)
        negatives = [negative.name if negative is not None else ""] * n
        vectors = {k: tuple(v.detach() for v in vs) for k, vs in s.objective.vectors().items()}
        with vae_on(s.c, s.device):
            images = draw(s.c, sample_prompts(name, n), negatives, vectors, steps=s.cfg.preview_steps)
        acc = accuracy(images, [(self.concept.colour, self.concept.shape)] * n)
        return {"toy_colour": acc["colour"], "toy_shape": acc["shape"], "toy_fidelity": acc["both"]}


fidelity.register("eval_toy", ToyScorer)
