"""The CLIP tokenizer shipped with the package (derived from clip-anytorch's BPE list by
tools/derive_clip_tokenizer.py), so no model folder or hub is needed to tokenize."""
from __future__ import annotations

import shutil
from pathlib import Path

ASSET = Path(__file__).parent / "assets" / "clip_tokenizer"
MAX_LENGTH = 77  # diffusers pipelines overflow without it


def load_clip_tokenizer(folder: str | Path = ASSET, pad_token: str = "<|endoftext|>"):
    from transformers import CLIPTokenizer

    # Load from a folder: transformers 5 silently builds a 3-token vocabulary from vocab_file=.
    return CLIPTokenizer.from_pretrained(str(folder), model_max_length=MAX_LENGTH, pad_token=pad_token)


def write_tokenizer_folder(dest: str | Path, pad_token: str = "<|endoftext|>") -> Path:
    """A diffusers-style tokenizer folder (vocab, merges, config) for a model saved by us."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("vocab.json", "merges.txt"):
        shutil.copyfile(ASSET / name, dest / name)
    load_clip_tokenizer(dest, pad_token).save_pretrained(str(dest))
    return dest
