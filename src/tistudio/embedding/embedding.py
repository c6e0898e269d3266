"""An embedding: named vectors for one or two text encoders, plus where they came from."""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

import torch

from ..errors import TIStudioError

# A trigger word must survive being a file name and a prompt word on every OS.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.\-]{0,63}$")


def validate_name(name: str) -> str:
    if not _NAME_RE.match(name or "") or name.endswith((".", " ")) or ".." in name:
        raise TIStudioError(
            f"embedding name {name!r} is not allowed; use 1-64 letters, digits, '-', '_' or '.', "
            "starting with a letter or digit (no path separators)")
    return name


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
