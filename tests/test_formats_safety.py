"""Embedding files are untrusted input: pickled code never runs, absurd sizes are refused before
allocation, and damaged files of every format give a one-line TIStudioError (never a traceback
or a hang)."""
from __future__ import annotations

import pickle
import struct
import tempfile
import zlib
from datetime import timedelta
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from safetensors.torch import save_file

from tistudio.embedding.embedding import Embedding
from tistudio.embedding.formats import load_embedding, save_embedding
from tistudio.embedding.formats import png_pixels
from tistudio.embedding.formats.a1111_optim import load_optim
from tistudio.errors import TIStudioError


class _CreatesFile:
    """Unpickling this would create the marker file (if anything ever ran it)."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _crafted(kind: str, path: Path, marker: Path) -> None:
    payload = {"string_to_param": {"*": _CreatesFile(str(marker))}, "name": "evil"}
    if kind == "torch-zip":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2 if kind == "pickle-2" else 4))


@pytest.mark.parametrize("kind", ["torch-zip", "pickle-2", "pickle-4"])
@pytest.mark.parametrize("suffix", [".pt", ".bin", ".ckpt"])
def test_crafted_pickle_is_refused_and_runs_nothing(tmp_path, kind, suffix):
    marker = tmp_path / "PWNED"
    path = tmp_path / f"evil{suffix}"
    _crafted(kind, path, marker)
    with pytest.raises(TIStudioError, match="refused as a tensor file") as err:
        load_embedding(path)
    assert "\n" not in str(err.value)
    _crafted(kind, path.with_name(path.name + ".optim"), marker)
    with pytest.raises(TIStudioError, match="refused as a tensor file"):
        load_optim(path, torch.zeros(1, 4))  # the optimizer side file reader is the same gate
    assert not marker.exists()


def test_crafted_pickle_through_the_cli(cli, tmp_path):
    marker = tmp_path / "PWNED"
    _crafted("torch-zip", tmp_path / "evil.pt", marker)
    run = cli("inspect", tmp_path / "evil.pt")
    assert run.returncode == 2 and run.stderr.startswith("error: ") and run.stderr.count("\n") == 1
    assert "never run" in run.stderr and not marker.exists()


@pytest.mark.parametrize("shape", [(76, 768), (2, 9000), (2, 3, 4), (0, 768), (2, 0)])
def test_absurd_shapes_are_refused(tmp_path, shape):
    torch.save({"emb_params": torch.zeros(shape)}, tmp_path / "x.pt")
    with pytest.raises(TIStudioError, match="shape"):
        load_embedding(tmp_path / "x.pt")


def test_non_float_tensor_and_mismatched_sdxl_pair_are_refused(tmp_path):
    save_file({"emb_params": torch.zeros(2, 8, dtype=torch.int8)}, str(tmp_path / "i.safetensors"))
    with pytest.raises(TIStudioError, match="dtype"):
        load_embedding(tmp_path / "i.safetensors")
    save_file({"clip_l": torch.zeros(2, 768), "clip_g": torch.zeros(3, 1280)}, str(tmp_path / "p.safetensors"))
    with pytest.raises(TIStudioError, match="damaged"):
        load_embedding(tmp_path / "p.safetensors")


def test_safetensors_header_lies(tmp_path):
    (tmp_path / "a.safetensors").write_bytes(struct.pack("<Q", 2**60) + b"{}" + b"\0" * 8)
    (tmp_path / "b.safetensors").write_bytes(struct.pack("<Q", 12) + b'{"x": [1, 2' + b"\0" * 8)
    for name in ("a.safetensors", "b.safetensors"):
        with pytest.raises(TIStudioError):
            load_embedding(tmp_path / name)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def test_ztxt_decompression_bomb_is_bounded(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "base.png")
    raw = (tmp_path / "base.png").read_bytes()
    bomb = _png_chunk(b"zTXt", b"sd-ti-embedding\0\0" + zlib.compress(b"A" * (80 << 20), 9))
    (tmp_path / "bomb.png").write_bytes(raw[:33] + bomb + raw[33:])  # after the 8+25-byte IHDR
    with pytest.raises(TIStudioError, match="decompression bomb"):
        load_embedding(tmp_path / "bomb.png")


def test_pixel_decompression_bomb_is_bounded(tmp_path):
    payload = zlib.compress(b"{" + b" " * (80 << 20), 9)
    png_pixels.encode(payload, Image.new("RGB", (16, 64), (90, 90, 90)), [128]).save(tmp_path / "bomb.png")
    with pytest.raises(TIStudioError, match="decompression bomb"):
        load_embedding(tmp_path / "bomb.png")


def test_image_size_bomb_is_refused_before_decoding(tmp_path):
    ihdr = _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0))
    (tmp_path / "huge.png").write_bytes(b"\x89PNG\r\n\x1a\n" + ihdr + _png_chunk(b"IEND", b""))
    with pytest.raises(TIStudioError):
        load_embedding(tmp_path / "huge.png")


# ---- random damage: every format, property-tested ------------------------------------------------

def _samples() -> dict[str, bytes]:
    emb = Embedding("probe", (torch.linspace(-1, 1, 2 * 24).reshape(2, 24),), step=3, sd_checkpoint="abcdef0123")
    xl = Embedding("probe", (torch.randn(1, 16), torch.randn(1, 24)), step=3)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for key, e, fmt, name in [("pt", emb, "a1111-pt", "e.pt"), ("png", emb, "a1111-png", "e.png"),
                                  ("safetensors", xl, "safetensors", "e.safetensors"),
                                  ("bin", emb, "diffusers", "e.bin")]:
            save_embedding(e, Path(tmp) / name, fmt)
            out[key] = (Path(tmp) / name).read_bytes()
        Image.open(Path(tmp) / "e.png").save(Path(tmp) / "e.webp", lossless=True)
        out["webp"] = (Path(tmp) / "e.webp").read_bytes()
    return out


SAMPLES = _samples()


@st.composite
def damage(draw):
    kind = draw(st.sampled_from(sorted(SAMPLES)))
    data = bytearray(SAMPLES[kind])
    if draw(st.booleans()):
        data = data[:draw(st.integers(0, len(data) - 1))]
    for _ in range(draw(st.integers(0 if len(data) == 0 else 1, 8))):
        if data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return kind, bytes(data)


@settings(max_examples=150, deadline=timedelta(seconds=10), suppress_health_check=[HealthCheck.too_slow])
@given(damage())
def test_random_damage_gives_embedding_or_one_line_error(case):
    kind, data = case
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"damaged.{kind}"
        path.write_bytes(data)
        try:
            emb = load_embedding(path)
        except TIStudioError as exc:
            assert "\n" not in str(exc) and str(exc)
        else:  # damage that missed the structure (e.g. inside tensor bytes) still gives a sane embedding
            assert 1 <= emb.n_vectors <= 75 and all(v.dtype == torch.float32 for v in emb.vectors)


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_truncated_file_cli_error_is_one_line(cli, tmp_path, kind):
    path = tmp_path / f"cut.{kind}"
    path.write_bytes(SAMPLES[kind][:min(200, len(SAMPLES[kind]) // 3)])  # inside the PNG's text chunk too
    run = cli("inspect", path)
    assert run.returncode == 2 and run.stderr.startswith("error: ") and run.stderr.count("\n") == 1
