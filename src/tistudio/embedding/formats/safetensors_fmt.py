"""`.safetensors` embeddings in the layout A1111 and ComfyUI read: `emb_params` for SD1/SD2,
`clip_l` + `clip_g` for SDXL, with our metadata as strings. The reader accepts every dict layout."""
from __future__ import annotations

import json
import struct
from pathlib import Path

from ...atomic import write_with
from ...errors import TIStudioError, first_line
from ..embedding import Embedding
from .dicts import BUNDLE_PREFIX
from .limits import check_file_size

MAX_HEADER_BYTES = 16 << 20
MAX_TENSORS = 16  # an embedding holds 1-4 tensors; more means a model or LoRA file


def tensors_of(emb: Embedding) -> dict:
    if len(emb.vectors) == 1:
        return {"emb_params": emb.vectors[0].contiguous()}
    return {"clip_l": emb.vectors[0].contiguous(), "clip_g": emb.vectors[1].contiguous()}


def metadata_of(emb: Embedding) -> dict[str, str]:
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in emb.meta.items()}
    meta.update({"name": emb.name, "step": str(emb.step), "vectors": str(emb.n_vectors),
                 "sd_checkpoint": emb.sd_checkpoint or "", "sd_checkpoint_name": emb.sd_checkpoint_name or ""})
    return meta


def save(emb: Embedding, path: str | Path) -> Path:
    return save_tensors(tensors_of(emb.detached()), metadata_of(emb), path)


def save_tensors(tensors: dict, metadata: dict[str, str], path: str | Path) -> Path:
    from safetensors.torch import save_file

    return write_with(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def is_safetensors(head: bytes, size: int) -> bool:
    """8-byte little-endian header length, then a JSON object."""
    if len(head) < 9 or head[8:9] != b"{":
        return False
    return 2 <= struct.unpack("<Q", head[:8])[0] <= size - 8


def _header_keys(path: Path) -> list[str]:
    size = check_file_size(path)
    with open(path, "rb") as fh:
        (length,) = struct.unpack("<Q", fh.read(8))
        if length > min(MAX_HEADER_BYTES, size - 8):
            raise TIStudioError(f"{path}: safetensors header claims {length} bytes; the file is damaged")
        header = json.loads(fh.read(length))
    if not isinstance(header, dict):
        raise TIStudioError(f"{path}: safetensors header is not a JSON object; the file is damaged")
    return [k for k in header if k != "__metadata__"]


def read(path: Path) -> tuple[dict, dict[str, str]]:
    """The tensors (only the embedding's, for LoRA files with bundled embeddings) and metadata."""
    from safetensors import safe_open

    try:
        keys = _header_keys(path)
        if any(k.startswith(BUNDLE_PREFIX) for k in keys):
            keys = [k for k in keys if k.startswith(BUNDLE_PREFIX)]
        if len(keys) > MAX_TENSORS:
            raise TIStudioError(f"{path}: holds {len(keys)} tensors, which is a model or LoRA, "
                                "not an embedding")
        with safe_open(str(path), framework="pt") as fh:
            return {k: fh.get_tensor(k) for k in keys}, dict(fh.metadata() or {})
    except TIStudioError:
        raise
    except Exception as exc:  # safetensors reports damage as assorted exception types
        raise TIStudioError(f"{path}: unreadable safetensors file ({first_line(exc)})") from None
