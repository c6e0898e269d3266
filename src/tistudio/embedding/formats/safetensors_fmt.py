"""`.safetensors` embeddings in the layout A1111 and ComfyUI read: `emb_params` for SD1/SD2,
`clip_l` + `clip_g` for SDXL, with our metadata as strings."""
from __future__ import annotations

import json
from pathlib import Path

from ...atomic import write_with
from ..embedding import Embedding


def tensors_of(emb: Embedding) -> dict:
    if len(emb.vectors) == 1:
        return {"emb_params": emb.vectors[0].contiguous()}
    return {"clip_l": emb.vectors[0].contiguous(), "clip_g": emb.vectors[1].contiguous()}


def metadata_of(emb: Embedding) -> dict[str, str]:
    meta = {"name": emb.name, "step": str(emb.step), "vectors": str(emb.n_vectors),
            "sd_checkpoint": emb.sd_checkpoint or "", "sd_checkpoint_name": emb.sd_checkpoint_name or ""}
    meta.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in emb.meta.items()})
    return meta


def save(emb: Embedding, path: str | Path) -> Path:
    from safetensors.torch import save_file

    emb = emb.detached()
    return write_with(path, lambda tmp: save_file(tensors_of(emb), str(tmp), metadata=metadata_of(emb)))
