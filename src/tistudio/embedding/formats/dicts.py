"""The dictionary layouts every producer uses (docs/formats.md), read into vectors + provenance.

One function decides the layout for pickles, safetensors and PNG JSON alike, so a layout read in
one container is read the same way in every other.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ...errors import TIStudioError
from .limits import check_shape

# Keys whose single tensor is not a trigger word (kohya: emb_params; OneTrainer: emp_params, sic).
ANONYMOUS_KEYS = ("emb_params", "emp_params", "*")
BUNDLE_PREFIX = "bundle_emb."


@dataclass
class Parsed:
    vectors: tuple[torch.Tensor, ...]
    layout: str                       # a1111 | clip_l+clip_g | single-tensor | bundle_emb
    name: str | None = None           # the name stored inside the file, if any
    token: str | None = None          # the dict key, when the key is a trigger (diffusers)
    step: int = 0
    sd_checkpoint: str | None = None
    sd_checkpoint_name: str | None = None
    ignored: list[str] = field(default_factory=list)  # keys we deliberately dropped (OneTrainer *_out)


def vectors_of(value: object, where: str) -> torch.Tensor:
    """A stored tensor as fp32 [n, width]; anything else is refused before it is used."""
    if not isinstance(value, torch.Tensor):
        raise TIStudioError(f"{where}: expected a tensor, found {type(value).__name__}")
    if not value.is_floating_point():
        raise TIStudioError(f"{where}: tensor has dtype {value.dtype}; expected floating point")
    check_shape(tuple(value.shape), where)
    value = value.detach().to("cpu", torch.float32)
    return (value.unsqueeze(0) if value.dim() == 1 else value).contiguous().clone()


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: object) -> int:
    try:
        return max(0, int(value))
    except (TypeError, ValueError, OverflowError, RuntimeError):
        return 0


def _unbundle(data: dict, where: str) -> dict:
    """A LoRA file with `bundle_emb.<name>.<key>` entries: the one embedding it bundles."""
    names = sorted({k[len(BUNDLE_PREFIX):].split(".", 1)[0] for k in data if k.startswith(BUNDLE_PREFIX)})
    if len(names) != 1:
        raise TIStudioError(f"{where}: bundles {len(names)} embeddings ({', '.join(names[:5])}); "
                            "extract one with the tool that made it")
    prefix = f"{BUNDLE_PREFIX}{names[0]}."
    sub = {k[len(prefix):]: v for k, v in data.items() if k.startswith(prefix)}
    if "string_to_param.*" in sub:  # kohya flattens the A1111 dict
        sub = {"*": sub["string_to_param.*"]}
    return {**sub, "name": names[0]}


def parse(data: object, where: str) -> Parsed:
    """Find the vectors in any known dict layout; the rest of the dict is provenance."""
    if not isinstance(data, dict):
        raise TIStudioError(f"{where}: not an embedding (top level is {type(data).__name__}, not a dict)")
    layout = "a1111"
    if "string_to_param" not in data and "clip_l" not in data and any(
            isinstance(k, str) and k.startswith(BUNDLE_PREFIX) for k in data):
        data, layout = _unbundle(data, where), "bundle_emb"
    ignored = sorted(k for k, v in data.items() if isinstance(k, str) and k.endswith("_out")
                     and isinstance(v, torch.Tensor))
    token = None
    if "string_to_param" in data:
        params = data["string_to_param"]
        params = getattr(params, "_parameters", params)  # very old files saved a ParameterDict
        if not isinstance(params, dict) or not params:
            raise TIStudioError(f"{where}: string_to_param holds no tensor")
        vectors = (vectors_of(next(iter(params.values())), where),)
    elif "clip_l" in data and "clip_g" in data:
        vectors = (vectors_of(data["clip_l"], f"{where} [clip_l]"), vectors_of(data["clip_g"], f"{where} [clip_g]"))
        if vectors[0].shape[0] != vectors[1].shape[0]:
            raise TIStudioError(f"{where}: clip_l has {vectors[0].shape[0]} vectors but clip_g has "
                                f"{vectors[1].shape[0]}; the file is damaged")
        layout = "clip_l+clip_g" if layout == "a1111" else layout
    else:
        tensors = {k: v for k, v in data.items() if isinstance(v, torch.Tensor) and k not in ignored}
        if len(tensors) != 1:
            raise TIStudioError(f"{where}: no embedding found (expected string_to_param, emb_params, "
                                f"clip_l+clip_g or one tensor; found {len(tensors)} tensors "
                                f"{sorted(map(str, tensors))[:5]})")
        key, value = next(iter(tensors.items()))
        vectors = (vectors_of(value, where),)
        token = None if key in ANONYMOUS_KEYS else str(key)
        layout = "single-tensor" if layout == "a1111" else layout
    return Parsed(vectors=vectors, layout=layout, name=_text(data.get("name")), token=token,
                  step=_int(data.get("step", 0)),
                  sd_checkpoint=_text(data.get("sd_checkpoint")) or _text(data.get("hash")),
                  sd_checkpoint_name=_text(data.get("sd_checkpoint_name")), ignored=ignored)
