"""A1111 PNG embeddings: the `.pt` dict as base64 JSON in a `sd-ti-embedding` text chunk, plus the
same JSON pixel-encoded around a captioned preview (docs/formats.md). Reading prefers the chunk and
falls back to the pixels (a re-save or a lossless WebP keeps only those)."""
from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

from PIL import Image, PngImagePlugin

from ... import pickle_zip
from ...atomic import write_with
from ...errors import TIStudioError, first_line
from ..embedding import Embedding
from . import png_caption, png_json, png_pixels
from .a1111_pt import note_of, to_dict
from .limits import MAX_IMAGE_PIXELS, MAX_JSON_BYTES

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TEXT_KEY = b"sd-ti-embedding"
NOTE_KEY = b"tistudio-embedding-note"  # SDXL metadata (see a1111_pt.note_of); A1111 reads only TEXT_KEY
MAX_IMAGE_FILE_BYTES = 256 << 20
PLACEHOLDER_SIZE = 256


def _placeholder() -> Image.Image:
    """A neutral preview for conversions, where no generated image exists."""
    ramp = Image.linear_gradient("L").resize((PLACEHOLDER_SIZE, PLACEHOLDER_SIZE))
    return Image.merge("RGB", (ramp.point(lambda v: 40 + v // 4), ramp.point(lambda v: 50 + v // 5),
                               ramp.point(lambda v: 90 + v // 3)))


def save_png_embedding(emb: Embedding, path: str | Path, preview_image: Image.Image | None = None) -> Path:
    """Write `path` as A1111's "Save images with embedding in PNG chunks" does: captioned preview,
    text chunk and pixel encoding."""
    emb = emb.detached()
    data = to_dict(emb)
    shorthash = f"[{emb.sd_checkpoint}]" if emb.sd_checkpoint else ""
    image = png_caption.caption(preview_image if preview_image is not None else _placeholder(),
                                f"<{emb.name}>", emb.sd_checkpoint_name or "", shorthash,
                                f"{emb.n_vectors}v {emb.step}s")
    payload = zlib.compress(png_json.dumps(data).encode("utf-8"), 9)
    image = png_pixels.encode(payload, image, png_pixels.shades_of(emb.vectors[0][0].tolist()))
    info = PngImagePlugin.PngInfo()
    info.add_text(TEXT_KEY.decode(), png_json.to_b64(data))
    note = note_of(emb)
    if note:
        info.add_text(NOTE_KEY.decode(), json.dumps(note, sort_keys=True))
    return write_with(path, lambda tmp: image.save(tmp, "PNG", pnginfo=info))


def save(emb: Embedding, path: str | Path) -> Path:
    return save_png_embedding(emb, path, None)


def text_chunk(raw: bytes, where: str, wanted: bytes = TEXT_KEY) -> str | None:
    """The `wanted` key's value (default `sd-ti-embedding`) from a PNG's tEXt/zTXt/iTXt chunks, read
    without PIL's size caps (a large SDXL embedding exceeds them) but with our own."""
    pos = len(PNG_SIGNATURE)
    while pos + 8 <= len(raw):
        length, kind = struct.unpack(">I4s", raw[pos:pos + 8])
        body = raw[pos + 8:pos + 8 + length]
        if len(body) < length or kind == b"IEND":
            break
        key, _, rest = body.partition(b"\0")
        if key == wanted and kind == b"tEXt":
            return rest.decode("latin-1")
        if key == wanted and kind == b"zTXt":
            return (png_json.inflate(rest[1:], where) or b"").decode("latin-1")
        if key == wanted and kind == b"iTXt" and len(rest) >= 2:
            _lang, _, tail = rest[2:].partition(b"\0")
            _translated, _, text = tail.partition(b"\0")
            text = (png_json.inflate(text, where) or b"") if rest[0] else text
            return text.decode("utf-8", errors="replace")
        pos += 12 + length
    return None


def _open_image(path: Path) -> Image.Image:
    try:
        image = Image.open(path)
        if image.width * image.height > MAX_IMAGE_PIXELS:
            raise TIStudioError(f"{path}: image is {image.width}x{image.height}, too large to hold an "
                                "embedding")
        image.load()
        return image
    except TIStudioError:
        raise
    except Exception as exc:  # PIL reports damage as many exception types
        raise TIStudioError(f"{path}: unreadable image ({first_line(exc)})") from None


def read(path: Path) -> tuple[dict, dict[str, str]]:
    """The embedding dict hidden in an image (PNG chunk, else pixels; WebP: pixels) and our note
    chunk's metadata ({} when absent: A1111's files, re-saved images)."""
    if path.stat().st_size > MAX_IMAGE_FILE_BYTES:
        raise TIStudioError(f"{path}: image file is too large to be an embedding")
    raw = path.read_bytes()
    chunk_error, note = None, {}
    if raw.startswith(PNG_SIGNATURE):
        note = _note(raw, str(path))
        text = text_chunk(raw, str(path))
        if text:
            try:
                return png_json.from_b64(text, str(path)), note
            except TIStudioError as exc:  # a damaged chunk: the pixels may still be intact
                chunk_error = exc
    found = png_pixels.decode(_open_image(path), str(path))
    if found is None:
        if chunk_error is not None:
            raise chunk_error
        raise TIStudioError(f"{path}: image holds no embedding (no sd-ti-embedding text chunk or pixel "
                            "data; lossy formats like JPEG destroy it)")
    if len(found) > MAX_JSON_BYTES:
        raise TIStudioError(f"{path}: embedding data is too large")
    return png_json.loads(found, str(path)), note


def _note(raw: bytes, where: str) -> dict[str, str]:
    """Metadata is a convenience: a damaged note is ignored rather than failing the embedding."""
    return pickle_zip.parse_note(text_chunk(raw, where, NOTE_KEY) or "")
