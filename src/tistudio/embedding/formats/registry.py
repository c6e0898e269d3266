"""Sniff a file's layout from its bytes (never its extension), read it into an Embedding, and write
any Embedding in a chosen format."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from ... import pickle_zip
from ...errors import TIStudioError, first_line
from ..embedding import Embedding, validate_name
from . import a1111_png, a1111_pt, diffusers_fmt, safetensors_fmt
from .dicts import Parsed, parse

FORMATS = {
    "a1111-pt": (".pt", a1111_pt.save),
    "a1111-png": (".png", a1111_png.save),
    "safetensors": (".safetensors", safetensors_fmt.save),
    "diffusers": ("", diffusers_fmt.save),  # a folder, or learned_embeds.safetensors / .bin
}
_BY_SUFFIX = {".pt": "a1111-pt", ".png": "a1111-png", ".safetensors": "safetensors", ".bin": "diffusers", "": "diffusers"}
# Metadata keys that are fields of Embedding, not free-form meta.
_OWN_KEYS = ("name", "step", "vectors", "sd_checkpoint", "sd_checkpoint_name")
# Where each field is found in other trainers' safetensors metadata, ours first: kohya sd-scripts
# writes ss_* training keys, kohya and OneTrainer both the ModelSpec `modelspec.title` (the output
# name); the others (ot_*, modelspec.*) stay in meta for `inspect`.
_META_KEYS = {
    "name": ("name", "ss_output_name", "modelspec.title"),
    "step": ("step", "ss_steps"),
    "sd_checkpoint": ("sd_checkpoint",),  # kohya's ss_*_hash keys are other hashes, not this short one
    "sd_checkpoint_name": ("sd_checkpoint_name", "ss_sd_model_name"),
}
_IMAGE_HEADS = (b"\xff\xd8\xff", b"GIF8", b"BM", b"II*\0", b"MM\0*", b"\xff\x0a", b"\0\0\0\x0cJXL ")


@dataclass
class Loaded:
    """An embedding plus where it came from, for `inspect` and for warnings."""

    embedding: Embedding
    container: str                    # pickle | safetensors | png | image | diffusers
    layout: str                       # see dicts.Parsed.layout
    stored_name: str | None = None    # the name inside the file (the trigger is the file stem)
    token: str | None = None          # diffusers' dict key
    ignored: list[str] = field(default_factory=list)
    files: tuple[Path, ...] = ()


def sniff(path: Path) -> str:
    if path.is_dir():
        return "diffusers"
    with open(path, "rb") as fh:
        head = fh.read(16)
    size = path.stat().st_size
    if head.startswith(a1111_png.PNG_SIGNATURE):
        return "png"
    if (head[:4] == b"RIFF" and head[8:12] == b"WEBP") or head.startswith(_IMAGE_HEADS) or head[4:12] == b"ftypavif":
        return "image"
    if safetensors_fmt.is_safetensors(head, size):
        return "safetensors"
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":  # torch zip archive / pickle protocol >= 2
        return "pickle"
    raise TIStudioError(f"{path}: not a known embedding format (expected .pt/.bin pickle, .safetensors, "
                        "PNG/WebP embedding or a diffusers folder)")


def _read_dict(path: Path, container: str) -> tuple[Parsed, dict[str, str]]:
    if container == "safetensors":
        data, meta = safetensors_fmt.read(path)
        return parse(data, str(path)), meta
    if container in ("png", "image"):
        data, note = a1111_png.read(path)
        return parse(data, str(path)), note
    return parse(a1111_pt.read_pickle(path), str(path)), pickle_zip.read_note(path)


def _read_pair(path: Path, files: tuple[Path, ...]) -> Loaded:
    parts = [_read_dict(f, sniff(f)) for f in files]
    vectors = tuple(p.vectors[0] for p, _ in parts)
    if len({v.shape[0] for v in vectors}) != 1:
        raise TIStudioError(f"{path}: {files[0].name} and {files[1].name} hold different numbers of vectors")
    first, meta = parts[0]
    folder = path if path.is_dir() else path.parent
    first = replace(first, vectors=vectors, layout=" + ".join(f.name for f in files))
    return _build(first, meta, folder.name, "diffusers", files)


def _first(meta: dict[str, str], keys: tuple[str, ...]) -> str | None:
    return next((meta[k] for k in keys if meta.get(k)), None)


def _build(parsed: Parsed, meta: dict[str, str], trigger: str, container: str, files: tuple[Path, ...]) -> Loaded:
    step = parsed.step or _int(_first(meta, _META_KEYS["step"]))
    emb = Embedding(name=trigger, vectors=parsed.vectors, step=step,
                    sd_checkpoint=parsed.sd_checkpoint or _first(meta, _META_KEYS["sd_checkpoint"]),
                    sd_checkpoint_name=parsed.sd_checkpoint_name or _first(meta, _META_KEYS["sd_checkpoint_name"]),
                    meta={k: v for k, v in meta.items() if k not in _OWN_KEYS})
    return Loaded(emb, container, parsed.layout, parsed.name or _first(meta, _META_KEYS["name"]), parsed.token,
                  parsed.ignored, files)


def _int(text: str | None) -> int:
    try:
        return max(0, int(text or 0))
    except ValueError:
        return 0


def read_embedding(path: str | Path) -> Loaded:
    """Read any supported layout. The trigger is the file stem as in A1111, except PNG embeddings
    (their stored name) and diffusers folders (the folder name)."""
    path = Path(path)
    if not path.exists():
        raise TIStudioError(f"{path}: embedding file not found")
    try:
        files = diffusers_fmt.pair(path)
        if files is not None:
            return _read_pair(path, files)
        container = sniff(path)
        parsed, meta = _read_dict(path, container)
        trigger = (parsed.name or path.stem) if container in ("png", "image") else path.stem
        return _build(parsed, meta, trigger, container, (path,))
    except TIStudioError:
        raise
    except Exception as exc:  # any library's surprise on a damaged file stays a one-line error
        raise TIStudioError(f"{path}: unreadable embedding file ({type(exc).__name__}: {first_line(exc)})") from None


def load_embedding(path: str | Path) -> Embedding:
    return read_embedding(path).embedding


def format_for(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in _BY_SUFFIX:
        raise TIStudioError(f"{path}: cannot tell the format from the extension; use .pt, .png, .safetensors, "
                            ".bin or a folder, or pass --to")
    return _BY_SUFFIX[suffix]


def save_embedding(emb: Embedding, path: str | Path, fmt: str | None = None) -> Path:
    path = Path(path)
    fmt = fmt or format_for(path)
    if fmt not in FORMATS:
        raise TIStudioError(f"format {fmt!r} is unknown; use one of {', '.join(FORMATS)}")
    return FORMATS[fmt][1](emb, path)


def convert(src: str | Path, dest: str | Path, fmt: str | None = None, name: str | None = None) -> tuple[Loaded, Path]:
    """Any readable layout to any writable one; vectors are copied bit for bit."""
    loaded = read_embedding(src)
    emb = loaded.embedding
    if name is not None:
        emb = replace(emb, name=validate_name(name))
    return loaded, save_embedding(emb, dest, fmt)
