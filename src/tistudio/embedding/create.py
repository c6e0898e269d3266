"""New embeddings from an init text, as A1111 builds them (--init words): tokenize the text without
special tokens (k tokens); vector i copies token ⌊i·k/n⌋ (stretching when k < n, dropping extras
when k > n); an empty init text gives zeros. Other starts (--init): zeros, random directions at the
vocabulary's median norm, or cross (Pang et al. 2023, "Cross Initialization for Personalized
Text-to-Image Generation", arXiv 2312.15905): the text encoder's OUTPUT for the init words, which
lies near where trained embeddings end up (same scale and direction), so training starts closer."""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import TIStudioError
from ..models.components import Components
from ..models.conditioning import PromptEncoder
from ..models.load import load_model
from .embedding import Embedding, validate_name
from .formats import FORMATS, save_embedding

MAX_VECTORS = 75  # one 75-token chunk
INITS = ("words", "cross", "zeros", "random")


def check_vectors(n_vectors: int, flag: str = "--vectors") -> int:
    if isinstance(n_vectors, bool) or not isinstance(n_vectors, int) or not 1 <= n_vectors <= MAX_VECTORS:
        raise TIStudioError(f"{flag} {n_vectors}: use 1 to {MAX_VECTORS} vectors per token")
    return n_vectors


def init_vectors(c: Components, init_text: str, n_vectors: int, init: str = "words",
                 seed: int = 0) -> tuple[torch.Tensor, ...]:
    """One [n_vectors, width] tensor per text encoder."""
    check_vectors(n_vectors)
    if init not in INITS:
        raise TIStudioError(f"--init {init}: use {'|'.join(INITS)}")
    ids = c.tokenizer(init_text, add_special_tokens=False, verbose=False).input_ids if init_text else []
    if init == "cross" and len(ids) > MAX_VECTORS:  # one chunk's outputs
        raise TIStudioError(f"--init cross: --init-text has {len(ids)} tokens; use at most {MAX_VECTORS}")
    if init == "cross" and not ids:
        raise TIStudioError("--init cross encodes the init text: give words with --init-text, e.g. 'cat'")
    spread = [i * len(ids) // n_vectors for i in range(n_vectors)]  # vector i <- token ⌊i·k/n⌋
    outputs = _encoded(c, init_text, len(ids)) if init == "cross" else None
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i, encoder in enumerate(c.text_encoders):
        table = encoder.get_input_embeddings().weight.detach().float().cpu()
        if init == "zeros" or (init == "words" and not ids):
            out.append(torch.zeros(n_vectors, table.shape[1]))
        elif init == "random":
            v = torch.randn(n_vectors, table.shape[1], generator=gen)
            out.append(v / v.norm(dim=1, keepdim=True) * table.norm(dim=1).median())
        elif init == "cross":
            out.append(outputs[i][spread].clone())
        else:
            out.append(table[[ids[j] for j in spread]].clone())
    return tuple(out)


def _encoded(c: Components, text: str, k: int) -> list[torch.Tensor]:
    """Per encoder, the conditioning the UNet sees at the init text's k tokens: [k, width_i] (the
    final-layer-norm output on SD1/SD2, SDXL's penultimate layer, as PromptEncoder makes them)."""
    with torch.no_grad():
        context = PromptEncoder(c).encode([text]).context[0].float().cpu()  # [77, sum of widths]
    tokens = context[1:1 + k]  # after BOS
    return list(tokens.split(list(c.widths), dim=-1))


def create_embedding(c: Components, name: str, init_text: str = "*", n_vectors: int = 1,
                     noise_std: float = 0.0, seed: int = 0, init: str = "words") -> Embedding:
    """`noise_std` > 0 adds Gaussian noise (DreamArtist's negative embedding starts that way so its
    vectors differ from the positive one's)."""
    validate_name(name)
    vectors = init_vectors(c, init_text, n_vectors, init, seed)
    if noise_std > 0:
        gen = torch.Generator().manual_seed(seed)
        vectors = tuple(v + noise_std * torch.randn(v.shape, generator=gen) for v in vectors)
    return Embedding(name=name, vectors=vectors, step=0, sd_checkpoint=c.short_hash,
                     sd_checkpoint_name=c.name,
                     meta={"family": c.family.name, "init_text": init_text,
                           **({"init": init} if init != "words" else {})})


def free_paths(out_dir: str | Path, names: list[str], fmt: str, overwrite: bool) -> list[Path]:
    if fmt not in FORMATS:
        raise TIStudioError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")
    paths = [Path(out_dir) / f"{n}{FORMATS[fmt][0]}" for n in names]
    for path in paths:
        if path.exists() and not overwrite:
            raise TIStudioError(f"{path} already exists; pass --overwrite to replace it or choose another name")
    return paths


def create_file(model: str | Components, name: str, init_text: str = "*", vectors: int = 1,
                out_dir: str | Path = "embeddings", overwrite: bool = False, fmt: str = "a1111-pt",
                init: str = "words") -> Path:
    """Write OUT_DIR/NAME.pt (or .safetensors) initialised from `init_text`. Every cheap check comes
    before the model loads, so a request that must fail never waits for one."""
    validate_name(name)
    check_vectors(vectors)
    path, = free_paths(out_dir, [name], fmt, overwrite)
    c = load_model(model) if isinstance(model, str) else model
    return save_embedding(create_embedding(c, name, init_text, vectors, init=init), path, fmt)


def create_pair_files(model: str | Components, name: str, init_text: str = "*", vectors: int = 3,
                      neg_init_text: str = "*", neg_vectors: int = 6, out_dir: str | Path = "embeddings",
                      overwrite: bool = False, fmt: str = "a1111-pt", init: str = "words") -> tuple[Path, Path]:
    """Write DreamArtist's pair OUT_DIR/NAME and OUT_DIR/NAME-neg; the negative starts with Gaussian
    noise (std 1e-3) so its vectors differ from the positive's. Both paths are checked first, so a
    refusal never leaves half a pair."""
    neg_name = validate_name(f"{validate_name(name)}-neg")
    check_vectors(vectors)
    check_vectors(neg_vectors, "--neg-vectors")
    paths = free_paths(out_dir, [name, neg_name], fmt, overwrite)
    c = load_model(model) if isinstance(model, str) else model
    pos = create_embedding(c, name, init_text, vectors, init=init)  # the negative keeps A1111's start
    neg = create_embedding(c, neg_name, neg_init_text, neg_vectors, noise_std=1e-3)
    return save_embedding(pos, paths[0], fmt), save_embedding(neg, paths[1], fmt)
