"""diffusers' textual-inversion layout: `{token: tensor[n, dim]}` in `learned_embeds.safetensors`
(or `.bin`); SDXL as two such files in one folder, `learned_embeds.safetensors` for CLIP-L and
`learned_embeds_2.safetensors` for CLIP-G, each loaded with its own encoder (docs/formats.md)."""
from __future__ import annotations

from pathlib import Path

import torch

from ... import pickle_zip
from ...errors import TIStudioError
from ..embedding import Embedding
from .safetensors_fmt import metadata_of, save_tensors

STEMS = ("learned_embeds", "learned_embeds_2")
SUFFIXES = (".safetensors", ".bin")


def _write(tensor: torch.Tensor, token: str, meta: dict[str, str], path: Path) -> Path:
    # One vector is stored 1-D [width], as the sd-concepts-library files are: InvokeAI's probe reads
    # shape[0] of a {token: tensor} file as the width, so [1, width] would be refused there.
    tensor = tensor[0] if tensor.shape[0] == 1 else tensor
    tensors = {token: tensor.contiguous()}
    if path.suffix == ".bin":
        return pickle_zip.save(tensors, path)
    return save_tensors(tensors, meta, path)


def save(emb: Embedding, path: str | Path) -> Path:
    """`path` is a file (`.safetensors`/`.bin`, SD1/SD2 only) or a folder. The token key is the
    embedding's name, which diffusers uses as the trigger."""
    emb, path = emb.detached(), Path(path)
    meta = metadata_of(emb)
    if path.suffix in SUFFIXES:
        if len(emb.vectors) != 1:
            raise TIStudioError(f"{path}: an SDXL embedding in diffusers layout is two files; give a "
                                "folder as the output instead")
        return _write(emb.vectors[0], emb.name, meta, path)
    if path.exists() and not path.is_dir():
        raise TIStudioError(f"{path}: exists and is not a folder; give a folder or a .safetensors/.bin name")
    for stem, vec in zip(STEMS, emb.vectors):
        _write(vec, emb.name, meta, path / f"{stem}.safetensors")
    return path


def _find(folder: Path, stem: str) -> Path | None:
    return next((folder / f"{stem}{ext}" for ext in SUFFIXES if (folder / f"{stem}{ext}").is_file()), None)


def pair(path: Path) -> tuple[Path, ...] | None:
    """The file(s) a diffusers-layout folder holds, or the two files of an SDXL pair when `path`
    is its first file; None when `path` is not such a layout."""
    if path.is_dir():
        first = _find(path, STEMS[0])
        if first is None:
            raise TIStudioError(f"{path}: folder holds no learned_embeds.safetensors or learned_embeds.bin")
        second = _find(path, STEMS[1])
        return (first, second) if second else (first,)
    if path.stem == STEMS[0] and path.suffix in SUFFIXES:
        second = _find(path.parent, STEMS[1])
        return (path, second) if second else None
    return None
