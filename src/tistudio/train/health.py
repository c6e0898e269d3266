"""Vector health: how large the trained vectors are next to the model's own word embeddings, and
how far they turned from where they started.

A vector whose norm grows far past the vocabulary's typical token norm outweighs every other word of
the prompt: the embedding then "takes over" images and ignores the rest of the prompt. The ratio to
the vocabulary's median token norm (per text encoder: SDXL's two encoders have different scales) is
the family-independent number to watch; --max-norm caps it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..events import Message

# Ratio to the vocabulary median above which we warn: ordinary tokens sit within about 0.5-2x of
# the median, so 4x means the vector is louder than any word the model learned.
WARN_RATIO = 4.0


@dataclass(frozen=True)
class VectorHealth:
    embedding: str
    encoder: int
    index: int
    norm: float
    ratio: float      # norm / the encoder vocabulary's median token norm
    drift: float      # 1 - cosine to the start vector (0 = same direction); nan for a zero start


def vocabulary_medians(components) -> tuple[float, ...]:
    """Median L2 norm of the token-embedding rows, one value per text encoder."""
    out = []
    for encoder in components.text_encoders:
        weight = encoder.get_input_embeddings().weight.detach()
        out.append(float(weight.float().norm(dim=1).median()))
    return tuple(out)


def measure(objective, start: dict[str, tuple[torch.Tensor, ...]], medians: tuple[float, ...]) -> list[VectorHealth]:
    """One entry per vector of every trained embedding and every encoder. `start[name][i]`: the
    [n, width_i] vectors the run began from."""
    rows = []
    with torch.no_grad():
        for e in objective.embeddings:
            for enc, (param, init) in enumerate(zip(e.params, start[e.name])):
                vectors, init = param.detach().float().cpu(), init.float().cpu()
                norms = vectors.norm(dim=1)
                cos = torch.nn.functional.cosine_similarity(vectors, init, dim=1)
                for v in range(vectors.shape[0]):
                    drift = 1.0 - float(cos[v]) if float(init[v].norm()) > 0 else math.nan
                    rows.append(VectorHealth(e.name, enc, v, float(norms[v]), float(norms[v]) / medians[enc], drift))
    return rows


def max_norms(objective) -> torch.Tensor:
    """The largest vector norm of every trained tensor (each embedding's, per encoder, in that
    order), as one 1-D tensor left on the device: the always-on warning reads it with the loop's
    next device-to-host copy (TrainState.defer), so watching costs no wait of its own."""
    with torch.no_grad():
        return torch.stack([param.detach().float().norm(dim=1).max()
                            for e in objective.embeddings for param in e.params])


def max_ratio(objective, norms: list[float], medians: tuple[float, ...]) -> float:
    """The largest norm / vocabulary-median ratio over every trained vector, from max_norms' values
    read to the host (measure() adds drift, for evaluations)."""
    encoders = [enc for e in objective.embeddings for enc in range(len(e.params))]
    return max(norm / medians[enc] for norm, enc in zip(norms, encoders))


def summary(rows: list[VectorHealth]) -> dict[str, float]:
    drifts = [r.drift for r in rows if not math.isnan(r.drift)]
    return {
        "max_norm_ratio": max(r.ratio for r in rows),
        "mean_norm_ratio": sum(r.ratio for r in rows) / len(rows),
        "mean_drift": sum(drifts) / len(drifts) if drifts else math.nan,
    }


def cap_norms(objective, medians: tuple[float, ...], max_ratio: float) -> None:
    """Scale down (never up) every vector whose norm exceeds max_ratio x its encoder's median, in
    place, keeping its direction. Run after each optimizer step (--max-norm)."""
    with torch.no_grad():
        for e in objective.embeddings:
            for enc, param in enumerate(e.params):
                cap = max_ratio * medians[enc]
                norms = param.norm(dim=1, keepdim=True).clamp_min(1e-12)
                param.mul_((cap / norms).clamp(max=1.0))


class VectorWatch:
    """The health of a run's trained vectors: their drift from where the run began (`start`), and
    a warning when a norm passes WARN_RATIO x the vocabulary median (once per onset). `last_ratio`
    is the latest max ratio seen (summary.json). `defer(values, then)`: reads a device tensor with
    the loop's next copy and calls `then` with its values (TrainState.defer)."""

    def __init__(self, objective, start: dict[str, tuple[torch.Tensor, ...]], medians: tuple[float, ...],
                 say, defer, last_ratio: float | None = None):
        self.objective = objective
        self.start = start
        self.medians = medians
        self.say = say
        self.defer = defer
        self.last_ratio = last_ratio
        self.warned = False

    def measure(self) -> list[VectorHealth]:
        return measure(self.objective, self.start, self.medians)

    def watch(self, step: int) -> None:
        """The cheap check after every step (when no evaluation measures the vectors): the norms of
        this step's vectors are taken now and judged when read, with the next step's loss, or before
        a preview, a save or the end (TrainState.settle); the warning still names this step."""
        self.defer(max_norms(self.objective),
                   lambda norms: self.check(step, max_ratio(self.objective, norms, self.medians)))

    def check(self, step: int, ratio: float) -> None:
        self.last_ratio = ratio
        if ratio > WARN_RATIO and not self.warned:
            self.say(Message("warning", f"step {step}: a vector's norm is {ratio:.1f}x the vocabulary's median "
                                        "token norm; the embedding may drown out the rest of the prompt "
                                        "(lower --lr or cap it with --max-norm 3)"))
        self.warned = ratio > WARN_RATIO
