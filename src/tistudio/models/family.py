"""Model families as data: what differs between SD1, SD2 and SDXL for embeddings and conditioning."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import TIStudioError


@dataclass(frozen=True)
class EncoderSpec:
    key: str        # name of this encoder's vectors in embedding files ("clip_l", "clip_h", "clip_g")
    width: int      # token-embedding width of the full-size model
    pad_token: str  # SD1/CLIP-L pad with <|endoftext|>; the OpenCLIP encoders pad with "!"


@dataclass(frozen=True)
class FamilySpec:
    name: str
    encoders: tuple[EncoderSpec, ...]
    resolution: int          # native training resolution
    # SDXL conditions on the penultimate layer without final layer norm and on pooled output + size ids.
    penultimate_no_norm: bool = False
    needs_pooled: bool = False


CLIP_L = EncoderSpec("clip_l", 768, "<|endoftext|>")
CLIP_H = EncoderSpec("clip_h", 1024, "!")
CLIP_G = EncoderSpec("clip_g", 1280, "!")

FAMILIES: dict[str, FamilySpec] = {
    "sd1": FamilySpec("sd1", (CLIP_L,), 512),
    "sd2": FamilySpec("sd2", (CLIP_H,), 768),
    "sdxl": FamilySpec("sdxl", (CLIP_L, CLIP_G), 1024, penultimate_no_norm=True, needs_pooled=True),
}
PREDICTIONS = ("epsilon", "v_prediction")


def get_family(name: str) -> FamilySpec:
    try:
        return FAMILIES[name]
    except KeyError:
        raise TIStudioError(f"--family {name!r} is unknown; use one of {', '.join(FAMILIES)}") from None

