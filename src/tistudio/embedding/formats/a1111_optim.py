"""A1111's optimizer side file `<embedding>.pt.optim`: {"hash": checksum, "optimizer_state_dict"}.

The checksum ties the state to the exact vectors it was saved with (docs/formats.md): a state saved
for other vectors (the .pt was replaced or edited) is ignored rather than applied to the wrong run.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import torch

from ... import pickle_zip
from ...errors import TIStudioError
from .a1111_pt import read_pickle

Vectors = torch.Tensor | Sequence[torch.Tensor]


def optim_path(path: str | Path) -> Path:
    """Accept the embedding's path or the side file's own path."""
    path = Path(path)
    return path if path.name.endswith(".optim") else path.with_name(path.name + ".optim")


def checksum(vectors: Vectors) -> str:
    """A1111's checksum: float32 values x 100, truncated toward zero, folded with 281 / 997.
    SDXL (two tensors) flattens them in encoder order. Non-finite values count as 0 so a NaN
    run can still save its state (A1111 crashes there)."""
    tensors = [vectors] if isinstance(vectors, torch.Tensor) else list(vectors)
    flat = torch.cat([t.detach().to("cpu", torch.float32).reshape(-1) for t in tensors])
    r = 0
    for value in (flat * 100).tolist():  # x100 in float32, as A1111 does it on the tensor
        r = ((r * 281) ^ (int(value) * 997 if math.isfinite(value) else 0)) & 0xFFFFFFFF
    return f"{r & 0xFFFF:04x}"


def save_optim(path: str | Path, vectors: Vectors, optimizer_state_dict: dict) -> Path:
    data = {"hash": checksum(vectors), "optimizer_state_dict": optimizer_state_dict}
    return pickle_zip.save(data, optim_path(path))


def load_optim(path: str | Path, vectors: Vectors) -> dict | None:
    """The saved optimizer state, or None when there is no side file or its checksum does not
    match `vectors`. A damaged side file is an error, not a silent fresh start."""
    target = optim_path(path)
    if not target.is_file():
        return None
    data = read_pickle(target)
    if not isinstance(data, dict) or "optimizer_state_dict" not in data:
        raise TIStudioError(f"{target}: not an optimizer side file (no optimizer_state_dict); delete it "
                            "to start the optimizer fresh")
    if data.get("hash") != checksum(vectors):
        return None
    state = data["optimizer_state_dict"]
    if not isinstance(state, dict):
        raise TIStudioError(f"{target}: optimizer_state_dict is not a dict; delete the file to start fresh")
    return state
