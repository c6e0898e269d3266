"""New embeddings from an init text, as A1111 builds them: tokenize the text without special
tokens (k tokens); vector i copies token ⌊i·k/n⌋ (stretching when k < n, dropping extras when
k > n); an empty init text gives zeros."""
from __future__ import annotations

import torch

from ..errors import TIStudioError
from ..models.components import Components
from .embedding import Embedding, validate_name

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
