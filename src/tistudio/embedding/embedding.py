"""An embedding: named vectors for one or two text encoders, plus where they came from."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from ..errors import TIStudioError
from .names import validate_name  # noqa: F401 - the name rule's home is names.py; re-exported for callers


@dataclass
class Embedding:
    """`vectors[i]` is a float32 tensor [n_vectors, width_i] for the model's i-th text encoder
    (SD1/SD2: one; SDXL: CLIP-L then CLIP-G)."""

    name: str
    vectors: tuple[torch.Tensor, ...]
    step: int = 0
    sd_checkpoint: str | None = None       # 10-hex short hash of the base model
    sd_checkpoint_name: str | None = None
    meta: dict = field(default_factory=dict)  # family, init text, config... (strings only in files)

    @property
    def n_vectors(self) -> int:
        return int(self.vectors[0].shape[0])

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(int(v.shape[1]) for v in self.vectors)

    def detached(self) -> "Embedding":
        """A copy safe to write or keep: fp32, on the CPU, no autograd history."""
        return replace(self, vectors=tuple(v.detach().float().cpu().clone() for v in self.vectors),
                       meta=dict(self.meta))

    def check_fits(self, widths: tuple[int, ...], where: str = "") -> None:
        """Refuse an embedding made for another model family or size, naming both widths."""
        if self.widths != tuple(widths):
            src = f" ({where})" if where else ""
            raise TIStudioError(
                f"embedding {self.name!r}{src} has vector width {'+'.join(map(str, self.widths))} but the "
                f"model's text encoder width is {'+'.join(map(str, widths))}; use an embedding made for "
                "this model family")
