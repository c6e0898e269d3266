"""New embeddings from an init text, as A1111 builds them: tokenize the text without special
tokens (k tokens); vector i copies token ⌊i·k/n⌋ (stretching when k < n, dropping extras when
k > n); an empty init text gives zeros."""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import TIStudioError
from ..models.components import Components
from ..models.load import load_model
from .embedding import Embedding, validate_name
from .formats import FORMATS, save_embedding

MAX_VECTORS = 75  # one 75-token chunk


def check_vectors(n_vectors: int, flag: str = "--vectors") -> int:
    if isinstance(n_vectors, bool) or not isinstance(n_vectors, int) or not 1 <= n_vectors <= MAX_VECTORS:
        raise TIStudioError(f"{flag} {n_vectors}: use 1 to {MAX_VECTORS} vectors per token")
    return n_vectors


def init_vectors(c: Components, init_text: str, n_vectors: int) -> tuple[torch.Tensor, ...]:
    check_vectors(n_vectors)
    ids = c.tokenizer(init_text, add_special_tokens=False, verbose=False).input_ids if init_text else []
    out = []
    for encoder in c.text_encoders:
        table = encoder.get_input_embeddings().weight.detach().float().cpu()
        if not ids:
            out.append(torch.zeros(n_vectors, table.shape[1]))
            continue
        k = len(ids)
        rows = [ids[i * k // n_vectors] for i in range(n_vectors)]
        out.append(table[rows].clone())
    return tuple(out)


def create_embedding(c: Components, name: str, init_text: str = "*", n_vectors: int = 1,
                     noise_std: float = 0.0, seed: int = 0) -> Embedding:
    """`noise_std` > 0 adds Gaussian noise (DreamArtist's negative embedding starts that way so its
    vectors differ from the positive one's)."""
    validate_name(name)
    vectors = init_vectors(c, init_text, n_vectors)
    if noise_std > 0:
        gen = torch.Generator().manual_seed(seed)
        vectors = tuple(v + noise_std * torch.randn(v.shape, generator=gen) for v in vectors)
    return Embedding(name=name, vectors=vectors, step=0, sd_checkpoint=c.short_hash,
                     sd_checkpoint_name=c.name,
                     meta={"family": c.family.name, "init_text": init_text})


def _free_paths(out_dir: str | Path, names: list[str], fmt: str, overwrite: bool) -> list[Path]:
    if fmt not in FORMATS:
        raise TIStudioError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")
    paths = [Path(out_dir) / f"{n}{FORMATS[fmt][0]}" for n in names]
    for path in paths:
        if path.exists() and not overwrite:
            raise TIStudioError(f"{path} already exists; pass --overwrite to replace it or choose another name")
    return paths


def create_file(model: str | Components, name: str, init_text: str = "*", vectors: int = 1,
                out_dir: str | Path = "embeddings", overwrite: bool = False, fmt: str = "a1111-pt") -> Path:
    """Write OUT_DIR/NAME.pt (or .safetensors) initialised from `init_text`. Every cheap check comes
    before the model loads, so a request that must fail never waits for one."""
    validate_name(name)
    check_vectors(vectors)
    path, = _free_paths(out_dir, [name], fmt, overwrite)
    c = load_model(model) if isinstance(model, str) else model
    return save_embedding(create_embedding(c, name, init_text, vectors), path, fmt)


def create_pair_files(model: str | Components, name: str, init_text: str = "*", vectors: int = 3,
                      neg_init_text: str = "*", neg_vectors: int = 6, out_dir: str | Path = "embeddings",
                      overwrite: bool = False, fmt: str = "a1111-pt") -> tuple[Path, Path]:
    """Write DreamArtist's pair OUT_DIR/NAME and OUT_DIR/NAME-neg; the negative starts with Gaussian
    noise (std 1e-3) so its vectors differ from the positive's. Both paths are checked first, so a
    refusal never leaves half a pair."""
    neg_name = validate_name(f"{validate_name(name)}-neg")
    check_vectors(vectors)
    check_vectors(neg_vectors, "--neg-vectors")
    paths = _free_paths(out_dir, [name, neg_name], fmt, overwrite)
    c = load_model(model) if isinstance(model, str) else model
    pos = create_embedding(c, name, init_text, vectors)
    neg = create_embedding(c, neg_name, neg_init_text, neg_vectors, noise_std=1e-3)
    return save_embedding(pos, paths[0], fmt), save_embedding(neg, paths[1], fmt)
