"""A1111's optimizer side file (`NAME.pt.optim`) for single-embedding runs: written beside the
finished `.pt`, and read when training starts from an embedding, so a run can continue an A1111
embedding with its AdamW moments (used only when the file's checksum matches the vectors).
Hypernetworks have their own side file (hash of the `.pt` file itself: hypernetwork/format.py)."""
from __future__ import annotations

from pathlib import Path

import torch

from ..embedding.formats.a1111_optim import load_optim, save_optim
from ..events import Message
from ..hypernetwork import format as hypernetwork_format
from .objectives.hypernetwork import TrainableHypernetwork


def _fits(objective, optimizer) -> bool:
    """A1111's file holds AdamW moments of one embedding: DreamArtist's pair, or another --optimizer,
    has no equivalent there."""
    return len(objective.embeddings) == 1 and type(optimizer) is torch.optim.AdamW


def restore(embedding_path: str, objective, optimizer, callback) -> bool:
    if not _fits(objective, optimizer):
        return False
    trained = objective.embeddings[0]
    if isinstance(trained, TrainableHypernetwork):
        state = hypernetwork_format.load_optim(embedding_path)
    else:
        state = load_optim(embedding_path, tuple(p.detach().cpu() for p in trained.params))
    if state is None:
        return False
    try:
        optimizer.load_state_dict(state)
    except (ValueError, KeyError) as exc:
        callback(Message("warning", f"{embedding_path}.optim does not fit this run ({exc}); starting fresh"))
        return False
    for group, e in zip(optimizer.param_groups, objective.embeddings):
        group["lr_weight"] = e.lr_weight  # A1111's side files have no such key; the loop reads it
    callback(Message("info", f"continuing with the optimizer state from {embedding_path}.optim"))
    return True


def write(path: Path, saved_vectors, objective, optimizer) -> Path | None:
    """`saved_vectors` are those in the file beside it (EMA ones when EMA is on): the checksum
    ties the optimizer state to exactly that file."""
    if not _fits(objective, optimizer):
        return None
    if isinstance(objective.embeddings[0], TrainableHypernetwork):
        return hypernetwork_format.save_optim(path, optimizer.state_dict())
    return save_optim(path, tuple(saved_vectors), optimizer.state_dict())
