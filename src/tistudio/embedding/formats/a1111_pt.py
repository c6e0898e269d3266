"""A1111's `.pt`: a torch.save'd dict with string_to_param {"*": tensor[n, dim]} (REFERENCE.md §1).
SDXL embeddings in the A1111 ecosystem use the clip_l/clip_g layout instead (safetensors_fmt)."""
from __future__ import annotations

from pathlib import Path

import torch

from ...atomic import write_with
from ...errors import TIStudioError
from ..embedding import Embedding


def to_dict(emb: Embedding) -> dict:
    if len(emb.vectors) == 1:
        params = {"string_to_param": {"*": emb.vectors[0]}, "string_to_token": {"*": 265}}
    else:  # SDXL: A1111 itself reads the clip_l / clip_g keys from a .pt as well.
        params = {"clip_l": emb.vectors[0], "clip_g": emb.vectors[1]}
    return {**params, "name": emb.name, "step": int(emb.step), "sd_checkpoint": emb.sd_checkpoint,
            "sd_checkpoint_name": emb.sd_checkpoint_name}


def save(emb: Embedding, path: str | Path) -> Path:
    data = to_dict(emb.detached())
    return write_with(path, lambda tmp: torch.save(data, tmp))


def read_pickle(path: str | Path) -> object:
    """torch.load that never executes pickled code: only tensors and plain containers are allowed."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # weights_only raises UnpicklingError for any global it does not allow
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TIStudioError(f"{path}: not a safe tensor file ({first[:200]}); "
                            "only plain tensor dictionaries are loaded, never pickled code") from None
