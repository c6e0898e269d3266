"""Per-embedding stop steps (an [[embeddings]] table's stop_step, docs/multi-embedding.md): once the
run has completed an embedding's stop step, its vectors and EMA average stay exactly as they were
then, while the run's other embeddings keep training.

Dropping the gradient alone would not be exact: --norm and --max-norm rescale every vector after the
step, a schedule-free optimizer moves every parameter between its two points, and a rollback goes back
to an older state. So the vectors are copied aside at the first step past the stop (pinned) and put
back after every optimizer step; their gradient is dropped too, so the optimizer leaves their moments
alone. The pin needs no place in state.pt: a resumed run's vectors past the stop are the pinned ones,
and it pins them again at its first step."""
from __future__ import annotations

import torch


class Stops:
    def __init__(self, trained):
        self.trained = [e for e in trained if e.stop_step]
        self.pinned: dict[str, tuple[torch.Tensor, ...]] = {}

    def stopped(self, step: int) -> set[str]:
        """The names of the embeddings stopped before optimizer step `step` + 1 (`step` steps done),
        pinning any that stop here."""
        for e in self.trained:
            if step >= e.stop_step and e.name not in self.pinned:
                self.pinned[e.name] = tuple(p.detach().clone() for p in e.params)
        return set(self.pinned)

    def drop_grads(self) -> None:
        """After backward: the stopped embeddings' gradients are gone (no clipping share, no moments)."""
        for e in self.trained:
            if e.name in self.pinned:
                for p in e.params:
                    p.grad = None

    @torch.no_grad()
    def restore(self) -> None:
        """After the optimizer step (and --norm, --max-norm, a rollback): the pinned vectors back."""
        for e in self.trained:
            for p, v in zip(e.params, self.pinned.get(e.name, ())):
                p.copy_(v)
