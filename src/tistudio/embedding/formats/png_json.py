"""The JSON inside A1111 PNG embeddings: the `.pt` dict with each tensor written as
{"TORCHTENSOR": nested list of floats} (docs/formats.md). float32 values survive exactly: Python
writes the shortest text that reads back as the same double, which is the same float32."""
from __future__ import annotations

import base64
import binascii
import json
import zlib

import torch

from ...errors import TIStudioError, first_line
from .limits import MAX_JSON_BYTES

TENSOR_KEY = "TORCHTENSOR"


def dumps(data: dict) -> str:
    def encode(obj: object) -> object:
        if isinstance(obj, torch.Tensor):
            return {TENSOR_KEY: obj.detach().float().cpu().tolist()}
        raise TypeError(f"cannot store {type(obj).__name__} in an embedding PNG")

    return json.dumps(data, default=encode)


def _tensor_hook(obj: dict) -> object:
    if TENSOR_KEY in obj:
        # A ragged or non-numeric list raises here and becomes a one-line error in loads().
        return torch.tensor(obj[TENSOR_KEY], dtype=torch.float32)
    return obj


def loads(text: str | bytes, where: str) -> dict:
    if len(text) > MAX_JSON_BYTES:
        raise TIStudioError(f"{where}: embedding data is {len(text) >> 20} MiB, too large to be an embedding")
    try:
        data = json.loads(text, object_hook=_tensor_hook)
    except (ValueError, TypeError, RecursionError, OverflowError, RuntimeError) as exc:
        raise TIStudioError(f"{where}: embedding data is not valid ({first_line(exc)})") from None
    if not isinstance(data, dict):
        raise TIStudioError(f"{where}: embedding data is not a JSON object")
    return data


def to_b64(data: dict) -> str:
    """The `sd-ti-embedding` text chunk: standard padded base64 of the UTF-8 JSON."""
    return base64.b64encode(dumps(data).encode("utf-8")).decode("ascii")


def from_b64(text: str, where: str) -> dict:
    if len(text) > MAX_JSON_BYTES * 4 // 3 + 4:
        raise TIStudioError(f"{where}: sd-ti-embedding text is too large to be an embedding")
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise TIStudioError(f"{where}: sd-ti-embedding text is not valid base64") from None
    return loads(raw, where)


def inflate(data: bytes, where: str) -> bytes | None:
    """zlib-decompress at most MAX_JSON_BYTES; trailing bytes after the stream are ignored (the
    pixel encoding pads with repeats). None when `data` is not a complete zlib stream."""
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, MAX_JSON_BYTES)
    except zlib.error:
        return None
    if not inflater.eof:
        if inflater.unconsumed_tail:
            raise TIStudioError(f"{where}: embedding data expands past {MAX_JSON_BYTES >> 20} MiB; "
                                "refusing a decompression bomb")
        return None
    return out
