"""A1111's `.pt`: a torch.save'd dict with string_to_param {"*": tensor[n, dim]} (docs/formats.md).
SDXL embeddings in the A1111 ecosystem use the clip_l/clip_g layout instead, which A1111 also reads
from a `.pt`. Pickles are read with torch's weights-only unpickler: code in a file is never run."""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import torch

from ... import pickle_zip
from ...errors import TIStudioError, first_line
from ..embedding import Embedding
from .limits import check_file_size

_GLOBAL_RE = re.compile(r"Unsupported global: GLOBAL ([\w.]+)|Trying to call reduce for callable ([\w.]+)|"
                        r"Unsupported class ([\w.]+)")
_OPCODE_RE = re.compile(r"Unsupported operand (\d+)")


def to_dict(emb: Embedding) -> dict:
    """The dict A1111 reads (also the JSON inside PNG embeddings). SD1/SD2: string_to_param beside
    the metadata, as A1111 writes it. SDXL: the two tensors only, because A1111 calls `.detach()` on
    every value of a dict holding clip_l/clip_g (a string there breaks the load); its metadata
    goes in `note_of` instead."""
    if len(emb.vectors) == 1:
        return {"string_to_param": {"*": emb.vectors[0]}, "string_to_token": {"*": 265}, "name": emb.name,
                "step": int(emb.step), "sd_checkpoint": emb.sd_checkpoint,
                "sd_checkpoint_name": emb.sd_checkpoint_name}
    return {"clip_l": emb.vectors[0], "clip_g": emb.vectors[1]}


def note_of(emb: Embedding) -> dict[str, str]:
    """The metadata `to_dict` leaves out (SDXL), as strings: kept beside the dict where every client
    ignores it (a `.pt` archive's comment, a PNG text chunk of its own)."""
    if len(emb.vectors) == 1:
        return {}
    return {"name": emb.name, "step": str(int(emb.step)), "sd_checkpoint": emb.sd_checkpoint or "",
            "sd_checkpoint_name": emb.sd_checkpoint_name or ""}


def save(emb: Embedding, path: str | Path) -> Path:
    emb = emb.detached()
    return pickle_zip.save(to_dict(emb), path, note=note_of(emb))


def _reason(exc: Exception) -> str:
    text = str(exc)
    found = _GLOBAL_RE.search(text)
    if found:
        return f"it references {next(g for g in found.groups() if g)}, code that is never run"
    found = _OPCODE_RE.search(text)
    if found:
        return f"it is not a plain tensor pickle (pickle opcode {found.group(1)})"
    return first_line(exc)


def read_pickle(path: str | Path) -> object:
    """torch.load that never executes pickled code: only tensors, plain containers and the old
    ParameterDict (reconstructed as data, its class code is torch's own) are allowed."""
    path = Path(path)
    check_file_size(path)
    try:
        # An open file, not the path: torch.load treats a `.safetensors` name as safetensors.
        with open(path, "rb") as fh, warnings.catch_warnings(), \
                torch.serialization.safe_globals([torch.nn.ParameterDict]):
            warnings.simplefilter("ignore")
            return torch.load(fh, map_location="cpu", weights_only=True)
    except Exception as exc:  # weights_only raises UnpicklingError for any global it does not allow
        raise TIStudioError(f"{path}: refused as a tensor file: {_reason(exc)}; "
                            "only plain tensor dictionaries are loaded") from None
