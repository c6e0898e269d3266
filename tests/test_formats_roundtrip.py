"""Property tests: every writer's output reads back bit-identical, with its name, step and base
model, and `convert` between any two formats keeps the vectors bit for bit."""
from __future__ import annotations

import tempfile
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tistudio.embedding.embedding import Embedding
from tistudio.embedding.formats import convert, read_embedding, save_embedding

# (format, file name pattern, supports SDXL, keeps step/hash, keeps NaN payloads)
WRITERS = [
    ("a1111-pt", "{}.pt", True, True, True),
    ("a1111-png", "{}.png", True, True, False),  # JSON has one NaN, not every NaN bit pattern
    ("safetensors", "{}.safetensors", True, True, True),
    ("diffusers", "{}", True, True, True),
    ("diffusers", "{}.bin", False, False, True),
]
SETTINGS = settings(max_examples=20, deadline=timedelta(seconds=20),
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def bits(t: torch.Tensor) -> np.ndarray:
    return t.numpy().view(np.uint32)


@st.composite
def embeddings(draw, sdxl: bool, nan: bool):
    n = draw(st.integers(1, 6))
    widths = (draw(st.integers(1, 24)), draw(st.integers(1, 24))) if sdxl else (draw(st.integers(1, 40)),)
    floats = st.floats(width=32, allow_nan=nan, allow_infinity=True)
    vectors = tuple(torch.from_numpy(np.array(draw(st.lists(floats, min_size=n * w, max_size=n * w)),
                                              np.float32).reshape(n, w)) for w in widths)
    name = draw(st.from_regex(r"[a-z0-9][a-z0-9_\-]{0,15}", fullmatch=True))
    return Embedding(name, vectors, step=draw(st.integers(0, 10**6)),
                     sd_checkpoint=draw(st.none() | st.from_regex(r"[0-9a-f]{10}", fullmatch=True)),
                     sd_checkpoint_name=draw(st.none() | st.sampled_from(["v1-5-pruned", "sd_xl_base_1.0"])))


def _writer_and_embedding():
    return st.sampled_from(WRITERS).flatmap(
        lambda w: st.tuples(st.just(w), embeddings(sdxl=False, nan=w[4]) | (
            embeddings(sdxl=True, nan=w[4]) if w[2] else embeddings(sdxl=False, nan=w[4]))))


@SETTINGS
@given(_writer_and_embedding())
def test_round_trip_each_format(case):
    (fmt, pattern, _, keeps_provenance, _), emb = case
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / pattern.format(emb.name)
        save_embedding(emb, path, fmt)
        got = read_embedding(path).embedding
    assert got.name == emb.name and got.widths == emb.widths
    for a, b in zip(got.vectors, emb.vectors):
        assert np.array_equal(bits(a), bits(b))
    if keeps_provenance:
        assert (got.step, got.sd_checkpoint, got.sd_checkpoint_name) == (
            emb.step, emb.sd_checkpoint, emb.sd_checkpoint_name)


@SETTINGS
@given(st.sampled_from(WRITERS), st.sampled_from(WRITERS), st.booleans(), st.data())
def test_convert_any_to_any_is_bit_identical(src, dest, sdxl, data):
    sdxl = sdxl and src[2] and dest[2]
    emb = data.draw(embeddings(sdxl=sdxl, nan=False))
    with tempfile.TemporaryDirectory() as tmp:
        a, b = Path(tmp) / src[1].format("in"), Path(tmp) / dest[1].format("out")
        save_embedding(emb, a, src[0])
        convert(a, b, dest[0], name="renamed")
        loaded = read_embedding(b)
    for x, y in zip(loaded.embedding.vectors, emb.vectors):
        assert np.array_equal(bits(x), bits(y))
    assert "renamed" in (loaded.stored_name, loaded.token, loaded.embedding.name)
