"""Prompt -> text-encoder hidden states (and SDXL's pooled output), with embedding vectors written
into the token-embedding output so gradients reach only those vectors.

Shapes: a batch of B prompts, each split into C chunks of 77 tokens (padded to the batch's longest),
gives context [B, 77*C, sum of encoder widths] and pooled [B, width of the last encoder] (SDXL).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

from .triggers import CHUNK, Chunk, TriggerMatcher
from .components import Components


@dataclass
class Conditioning:
    context: torch.Tensor                 # [B, 77*C, D]
    pooled: torch.Tensor | None = None    # [B, P] for SDXL


def _text_model(encoder):
    return getattr(encoder, "text_model", encoder)


@contextlib.contextmanager
def _rows_overridden(encoder, fixes: list[tuple[int, int, torch.Tensor]]):
    """While active, the token-embedding output gets `vectors` at [row, offset:offset+n]."""
    def hook(_module, _inputs, output):
        if not fixes:
            return output
        output = output.clone()
        for row, offset, vectors in fixes:
            output[row, offset:offset + vectors.shape[0]] = vectors.to(output.dtype)
        return output

    handle = encoder.get_input_embeddings().register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


class PromptEncoder:
    """Encodes prompts for one model. `clip_skip` 1 uses the last layer (SD1/SD2; the guide's
    advice is 2 for anime models); SDXL always starts from the penultimate layer, unnormalised."""

    def __init__(self, components: Components, clip_skip: int = 1):
        self.c = components
        self.clip_skip = clip_skip
        tok = components.tokenizer
        self.bos, self.eos = tok.bos_token_id, tok.eos_token_id

    def _rows(self, chunks: Sequence[Chunk], pad: int) -> torch.Tensor:
        rows = [[self.bos, *ch.tokens, self.eos] + [pad] * (CHUNK - len(ch.tokens)) for ch in chunks]
        return torch.tensor(rows, dtype=torch.long)

    def encode(self, prompts: Sequence[str],
               vectors: Mapping[str, Sequence[torch.Tensor]] | None = None) -> Conditioning:
        """`vectors[name][i]` is the [n, width_i] tensor of embedding `name` for encoder i."""
        vectors = vectors or {}
        matcher = TriggerMatcher(self.c.tokenizer, {k: int(v[0].shape[0]) for k, v in vectors.items()})
        per_prompt = [matcher.chunks(p) for p in prompts]
        n_chunks = max(len(c) for c in per_prompt)
        # Shorter prompts are padded with empty chunks so the batch stacks (as A1111 does).
        flat = [ch for chunks in per_prompt for ch in chunks + [Chunk()] * (n_chunks - len(chunks))]
        eos_pos = torch.tensor([len(ch.tokens) + 1 for ch in flat])
        device = next(self.c.unet.parameters()).device
        contexts, pooled = [], None
        for i, encoder in enumerate(self.c.text_encoders):
            fixes = [(r, off + 1, vectors[name][i]) for r, ch in enumerate(flat) for off, name in ch.fixes]
            ids = self._rows(flat, self.c.pad_ids[i]).to(device)
            with _rows_overridden(encoder, fixes):
                out = encoder(ids, output_hidden_states=True)
            hidden = out.hidden_states
            tm = _text_model(encoder)
            if self.c.family.penultimate_no_norm:
                h = hidden[-1 - self.clip_skip]
            else:
                h = tm.final_layer_norm(hidden[-self.clip_skip])
            contexts.append(h.reshape(len(prompts), n_chunks * (CHUNK + 2), -1))
            if self.c.family.needs_pooled and hasattr(encoder, "text_projection"):
                # Pool at the true EOS position of each prompt's first chunk (not argmax of ids).
                last = tm.final_layer_norm(hidden[-1])
                first_rows = torch.arange(0, len(flat), n_chunks)
                pooled = encoder.text_projection(last[first_rows, eos_pos[first_rows].to(device)])
        return Conditioning(torch.cat(contexts, dim=-1), pooled)
