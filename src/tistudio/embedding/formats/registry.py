"""Sniff a file's layout from its bytes (never its extension), read it into an Embedding, and write
any Embedding in a chosen format."""
from __future__ import annotations

from pathlib import Path

import torch

from ...errors import TIStudioError
from ..embedding import Embedding
from . import a1111_pt, safetensors_fmt

FORMATS = {"a1111-pt": (".pt", a1111_pt.save), "safetensors": (".safetensors", safetensors_fmt.save)}
# Keys under which single-tensor producers store their vectors (REFERENCE.md §1).
SINGLE_KEYS = ("emb_params", "emp_params")


def _from_dict(data: dict, path: Path, meta: dict | None = None) -> Embedding:
    meta = dict(meta or {})
    name = str(meta.pop("name", "") or data.get("name") or path.stem) if isinstance(data, dict) else path.stem
    step = int(meta.pop("step", 0) or data.get("step") or 0)
    extras = {k: meta.pop(k) or None for k in ("sd_checkpoint", "sd_checkpoint_name") if k in meta}
    if "string_to_param" in data:
        params = data["string_to_param"]
        params = getattr(params, "_parameters", params)  # very old files saved a ParameterDict
        vectors = (next(iter(params.values())),)
        extras = {"sd_checkpoint": data.get("sd_checkpoint") or data.get("hash"),
                  "sd_checkpoint_name": data.get("sd_checkpoint_name")}
    elif "clip_l" in data and "clip_g" in data:
        vectors = (data["clip_l"], data["clip_g"])
    else:
        tensors = {k: v for k, v in data.items() if isinstance(v, torch.Tensor)}
        if len(tensors) != 1:
            raise TIStudioError(f"{path}: no embedding found (expected string_to_param, emb_params, "
                                f"clip_l/clip_g or a single tensor; found {sorted(tensors)[:5]})")
        vectors = tuple(tensors.values())
    vectors = tuple((v.unsqueeze(0) if v.dim() == 1 else v).detach().float().cpu() for v in vectors)
    for v in vectors:
        if v.dim() != 2 or not 1 <= v.shape[0] <= 75 or not 1 <= v.shape[1] <= 8192:
            raise TIStudioError(f"{path}: embedding tensor has shape {tuple(v.shape)}; expected [1-75, width]")
    return Embedding(name=name, vectors=vectors, step=step, meta=meta, **extras)


def load_embedding(path: str | Path) -> Embedding:
    """Read an embedding file of any supported layout. The trigger name is the file stem, as in A1111."""
    path = Path(path)
    if not path.is_file():
        raise TIStudioError(f"{path}: embedding file not found")
    head = path.read_bytes()[:16]
    if head[8:9] == b"{":  # safetensors: 8-byte little-endian header length, then JSON
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as fh:
                data = {k: fh.get_tensor(k) for k in fh.keys()}
                meta = fh.metadata() or {}
        except Exception as exc:
            raise TIStudioError(f"{path}: unreadable safetensors file ({exc})") from None
        emb = _from_dict(data, path, meta)
    else:
        data = a1111_pt.read_pickle(path)
        if not isinstance(data, dict):
            raise TIStudioError(f"{path}: not an embedding (top level is {type(data).__name__}, not a dict)")
        emb = _from_dict(data, path)
    emb.name = path.stem
    return emb


def save_embedding(emb: Embedding, path: str | Path, fmt: str | None = None) -> Path:
    path = Path(path)
    if fmt is None:
        fmt = next((k for k, (ext, _) in FORMATS.items() if path.suffix == ext), None)
        if fmt is None:
            raise TIStudioError(f"{path}: cannot tell the format from the extension; use .pt or .safetensors")
    if fmt not in FORMATS:
        raise TIStudioError(f"format {fmt!r} is unknown; use one of {', '.join(FORMATS)}")
    return FORMATS[fmt][1](emb, path)
