"""Hostile files, generated: every loader (embeddings of each container, single-file checkpoints, PNG
text chunks and pixel data, dataset images, templates, captions, TOML configs) is fed structured
random input by hypothesis. The only outcomes allowed are a result or a clean one-line
TIStudioError: no other exception, no hang (per-case deadline), no unbounded memory (peak RSS checked),
and no pickled code ever run (a marker file some cases would create must never appear).

tests/test_formats_safety.py covers byte damage of valid embeddings and the named bombs; this file
generates the structures themselves. Fast tier: FAST cases per loader; slow tier: SLOW per loader
(11 loaders x 10,000 = 110,000 cases)."""
from __future__ import annotations

import base64
import io
import json
import pickle
import struct
import tempfile
import zlib
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from tistudio.config import TrainConfig, from_dict, load_toml
from tistudio.data.captions import caption_for
from tistudio.data.dataset import load_image, scan_images
from tistudio.data.templates import load_template
from tistudio.embedding.formats import load_embedding
from tistudio.embedding.formats import png_pixels
from tistudio.errors import TIStudioError
from tistudio.memory import peak_rss_gib
from tistudio.models.single_file import read_checkpoint

FAST, SLOW = 30, 10_000
MARKER = Path(tempfile.gettempdir()) / "tistudio-fuzz-PWNED"
COUNTS: dict[str, int] = {}


class _CreatesFile:
    """Unpickling this would create MARKER, if anything ever ran pickled code."""

    def __reduce__(self):
        return (open, (str(MARKER), "w"))


def clean(call, *args):
    """Run a loader: a value or a one-line TIStudioError; anything else fails the case."""
    try:
        return call(*args)
    except TIStudioError as exc:
        text = str(exc)
        assert text and "\n" not in text, repr(text)
        return None


# ---- strategies -----------------------------------------------------------------------------

KEYS = st.sampled_from(["string_to_param", "*", "clip_l", "clip_g", "emb_params", "name", "step",
                        "string_to_token", "sd_checkpoint", "<tok>", "state_dict", "global_step", "x"])
DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.uint8, torch.bool]


@st.composite
def tensors(draw):
    shape = draw(st.lists(st.integers(0, 80), max_size=3))
    dtype = draw(st.sampled_from(DTYPES))
    t = torch.zeros(shape, dtype=dtype)
    if t.numel() and dtype.is_floating_point:
        fill = draw(st.sampled_from([0.0, 1.0, -3.5, float("nan"), float("inf"), 1e30]))
        t = t + fill
    return t


LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), st.text(max_size=20),
                   tensors())
TREES = st.recursive(LEAVES, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                    st.dictionaries(st.one_of(KEYS, st.integers()), kids,
                                                                    max_size=4)), max_leaves=12)
JSON = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                              st.text(max_size=10)),
                    lambda kids: st.one_of(st.lists(kids, max_size=4),
                                           st.dictionaries(st.one_of(KEYS, st.just("TORCHTENSOR")), kids,
                                                           max_size=4)), max_leaves=16)


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _base_png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(buf, "PNG")
    return buf.getvalue()


BASE_PNG = _base_png()


@st.composite
def png_text_files(draw):
    payload = draw(st.one_of(JSON.map(lambda j: json.dumps(j).encode()), st.binary(max_size=200)))
    if draw(st.booleans()):
        payload = base64.b64encode(payload)
    kind = draw(st.sampled_from([b"tEXt", b"zTXt", b"iTXt"]))
    key = draw(st.sampled_from([b"sd-ti-embedding", b"parameters", b""]))
    if kind == b"zTXt":
        body = key + b"\0\0" + (zlib.compress(payload) if draw(st.booleans()) else payload)
    elif kind == b"iTXt":
        flag = draw(st.integers(0, 1))
        body = key + b"\0" + bytes([flag, 0]) + b"en\0\0" + (zlib.compress(payload) if flag else payload)
    else:
        body = key + b"\0" + payload
    chunk = png_chunk(kind, body)
    if draw(st.booleans()):  # a lying length or CRC
        chunk = struct.pack(">I", draw(st.integers(0, 2**32 - 1))) + chunk[4:]
    return BASE_PNG[:33] + chunk + BASE_PNG[33:]


@st.composite
def pixel_files(draw):
    h, w = draw(st.integers(1, 48)), draw(st.integers(1, 48))
    if draw(st.booleans()):  # noise
        seed = draw(st.integers(0, 2**32 - 1))
        arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
        image = Image.fromarray(arr)
    else:  # a real pixel encoding of a hostile payload
        raw = draw(st.one_of(JSON.map(lambda j: json.dumps(j).encode()), st.binary(max_size=300)))
        payload = zlib.compress(raw) if draw(st.booleans()) else raw
        image = png_pixels.encode(payload, Image.new("RGB", (w, max(h, 8)), (90, 90, 90)), [128])
    buf = io.BytesIO()
    image.save(buf, draw(st.sampled_from(["PNG", "WEBP"])), **({"lossless": True}))
    return buf.getvalue()


@st.composite
def safetensors_files(draw):
    header = {}
    for _ in range(draw(st.integers(0, 4))):
        header[draw(st.one_of(KEYS, st.text(max_size=8)))] = {
            "dtype": draw(st.sampled_from(["F32", "F16", "BF16", "I64", "U8", "BOOL", "F64", "XX", 7])),
            "shape": draw(st.lists(st.integers(-2, 2**40), max_size=3)),
            "data_offsets": draw(st.lists(st.integers(-1, 2**40), min_size=0, max_size=3)),
        }
    if draw(st.booleans()):
        header["__metadata__"] = draw(st.dictionaries(st.text(max_size=8), st.one_of(st.text(max_size=8),
                                                                                        st.integers()), max_size=3))
    text = json.dumps(header).encode()
    length = len(text) if draw(st.booleans()) else draw(st.integers(0, 2**64 - 1))
    return struct.pack("<Q", length) + text + draw(st.binary(max_size=600))


@st.composite
def pickle_files(draw):
    tree = draw(TREES)
    if draw(st.booleans()):
        tree = {"string_to_param": {"*": _CreatesFile()}, "state_dict": tree}
    buf = io.BytesIO()
    if draw(st.booleans()):
        torch.save(tree, buf)
    else:
        pickle.dump(tree, buf, protocol=draw(st.integers(2, 5)))
    data = bytearray(buf.getvalue())
    # A little damage on top of the structure. Positions are drawn as fractions: torch.save writes
    # a random serialization id, so the length (and thus an index range) can vary between runs.
    for where, value in draw(st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)),
                                      max_size=3)):
        data[int(where * len(data))] = value
    return bytes(data)


IMAGE_HEADS = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"RIFF\0\0\0\0WEBP", b"BM", b""]
TOML_VALUES = st.one_of(st.integers(-10, 10**6), st.floats(allow_nan=False, allow_infinity=False), st.booleans(),
                        st.text(max_size=12), st.lists(st.text(max_size=6), max_size=3),
                        st.dictionaries(st.text(min_size=1, max_size=8), st.integers(), max_size=2))
FIELDS = st.sampled_from([f for f in TrainConfig.__dataclass_fields__] + ["bogus", "model", "dreamartist"])


@st.composite
def toml_files(draw):
    import tomli_w

    if draw(st.integers(0, 4)) == 0:
        return draw(st.binary(max_size=200))
    doc = draw(st.dictionaries(FIELDS, TOML_VALUES, max_size=6))
    try:
        return tomli_w.dumps(doc).encode()
    except (TypeError, ValueError):
        return b"steps = "


# ---- the loaders, each with its file suffix -----------------------------------------------------

def _embedding(path):
    emb = load_embedding(path)
    assert 1 <= emb.n_vectors <= 75 and all(v.dtype == torch.float32 for v in emb.vectors)


def _checkpoint(path):
    ckpt = read_checkpoint(path)
    assert all(isinstance(v, torch.Tensor) for v in ckpt.state_dict.values())


def _image(path):
    images, skipped = [], []
    try:
        images, skipped = scan_images(path.parent)
    except TIStudioError:
        pass
    # The scan rejects what cannot decode; whatever it keeps must load at the training size.
    for image in images:
        assert load_image(image, 16, 16).shape == (3, 16, 16)


def _template(path):
    assert load_template(path)


def _caption(path):
    assert isinstance(caption_for(path.with_suffix(".png")), str)


def _toml(path):
    return from_dict(TrainConfig, load_toml(path), str(path))


LOADERS = {
    "embedding-pickle": (pickle_files(), ".pt", _embedding),
    "embedding-safetensors": (safetensors_files(), ".safetensors", _embedding),
    "embedding-png-text": (png_text_files(), ".png", _embedding),
    "embedding-pixels": (pixel_files(), ".png", _embedding),
    "embedding-raw": (st.tuples(st.sampled_from(IMAGE_HEADS + [b"PK\x03\x04", b"\x80\x02"]), st.binary(max_size=400))
                      .map(lambda t: t[0] + t[1]), ".bin", _embedding),
    "checkpoint-pickle": (pickle_files(), ".ckpt", _checkpoint),
    "checkpoint-safetensors": (safetensors_files(), ".safetensors", _checkpoint),
    "dataset-image": (st.one_of(pixel_files(), png_text_files(),
                                st.tuples(st.sampled_from(IMAGE_HEADS), st.binary(max_size=300))
                                .map(lambda t: t[0] + t[1])), ".png", _image),
    "template": (st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode)), ".txt", _template),
    "caption": (st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode)), ".txt", _caption),
    "toml-config": (toml_files(), ".toml", _toml),
}


def fuzz(name: str, n: int) -> int:
    strategy, suffix, loader = LOADERS[name]
    seen = [0]

    @settings(max_examples=n, deadline=timedelta(seconds=20), database=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def case(data):
        seen[0] += 1
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"fuzzed{suffix}"
            path.write_bytes(data)
            clean(loader, path)
        assert not MARKER.exists(), "pickled code ran"

    MARKER.unlink(missing_ok=True)
    case()
    COUNTS[name] = COUNTS.get(name, 0) + seen[0]
    return seen[0]


def peak_rss_mib() -> float:
    return peak_rss_gib() * 1024


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_fuzzed_files_give_a_result_or_one_line_error(name):
    assert fuzz(name, FAST) >= FAST // 2


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(LOADERS))
def test_fuzzed_files_at_scale(name):
    before = peak_rss_mib()
    n = fuzz(name, SLOW)
    print(f"\nfuzz {name}: {n} cases, peak RSS {before:.0f} -> {peak_rss_mib():.0f} MiB")
    assert n >= SLOW * 0.9  # hypothesis may stop a little early once a small space is exhausted
    assert peak_rss_mib() < before + 1024, "memory grew by more than 1 GiB during fuzzing"


def test_malicious_checkpoint_pickle_runs_nothing(tmp_path):
    """A .ckpt whose pickle would create a file: loading it (through the allow-list unpickler
    fallback) creates nothing."""
    marker = tmp_path / "PWNED"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"state_dict": {"w": torch.zeros(2)}, "callbacks": Evil()}, tmp_path / "m.ckpt")
    ckpt = read_checkpoint(tmp_path / "m.ckpt")
    assert list(ckpt.state_dict) == ["w"] and not marker.exists()
    (tmp_path / "raw.ckpt").write_bytes(pickle.dumps({"state_dict": Evil()}, protocol=2))
    clean(read_checkpoint, tmp_path / "raw.ckpt")
    assert not marker.exists()
