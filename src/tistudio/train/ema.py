"""Exponential moving average of the trained vectors, for any objective (TI or DreamArtist).

After every optimizer step: shadow = decay * shadow + (1 - decay) * live. The shadow is what previews
and the saved embeddings show, and it is kept in the training state so a resumed run continues the
same average (the DreamArtist reference never saved it). With `replace_every` N > 0 the shadow is
also copied into the live vectors every N steps, the reference's behaviour (it updated per
micro-step and copied every 25; here updates are per optimizer step, so accumulation does not
change the averaging horizon).
"""
from __future__ import annotations

from typing import Mapping

import torch

from ..errors import TIStudioError


class EMA:
    def __init__(self, embeddings, decays: Mapping[str, float], replace_every: int = 0):
        """`decays[name]` in (0, 1) for each embedding to average; others are left out."""
        self.decays = {e.name: float(decays[e.name]) for e in embeddings if decays.get(e.name)}
        self.replace_every = replace_every
        self.shadow = {e.name: tuple(p.detach().clone() for p in e.params)
                       for e in embeddings if e.name in self.decays}

    @torch.no_grad()
    def update(self, embeddings, step: int) -> None:
        """Call after optimizer step `step` (1-based count of completed steps)."""
        for e in embeddings:
            if e.name not in self.shadow:
                continue
            d = self.decays[e.name]
            for shadow, live in zip(self.shadow[e.name], e.params):
                shadow.mul_(d).add_(live.detach(), alpha=1 - d)
            if self.replace_every and step % self.replace_every == 0:
                for shadow, live in zip(self.shadow[e.name], e.params):
                    live.copy_(shadow)

    def vectors(self, embeddings) -> dict[str, tuple[torch.Tensor, ...]]:
        """{name: vectors} with the shadow where there is one, else the live vectors."""
        return {e.name: self.shadow.get(e.name, e.params) for e in embeddings}

    def state_dict(self) -> dict:
        return {"decays": dict(self.decays), "replace_every": self.replace_every,
                "shadow": {k: [v.detach().float().cpu().clone() for v in vs] for k, vs in self.shadow.items()}}

    def load_state_dict(self, state: Mapping, where: str = "state") -> None:
        saved = state.get("shadow", {})
        for name, mine in self.shadow.items():
            if name not in saved:
                raise TIStudioError(f"{where}: no EMA average of {name!r} was saved; resume without "
                                    "--ema/--ema-neg or start a new run")
            if [tuple(v.shape) for v in saved[name]] != [tuple(v.shape) for v in mine]:
                raise TIStudioError(f"{where}: the saved EMA of {name!r} has other shapes than the embedding")
            self.shadow[name] = tuple(v.to(m.device, m.dtype).clone() for v, m in zip(saved[name], mine))


def output_vectors(embeddings, ema: EMA | None) -> dict[str, tuple[torch.Tensor, ...]]:
    """The vectors to preview and save: the EMA shadow when there is one, else the live vectors."""
    if ema is None:
        return {e.name: e.params for e in embeddings}
    return ema.vectors(embeddings)
