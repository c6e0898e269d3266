"""What `tistudio inspect` reports about an embedding: provenance, shape, per-vector norms and,
given a model, how those norms compare with the vocabulary's and which real tokens each vector is
nearest to (a quick check of whether training drifted off the token manifold)."""
from __future__ import annotations

import torch

from ...models.family import FAMILIES
from ...models.tiny_widths import TINY_TEXT_WIDTHS
from .registry import Loaded

TOY_TEXT_WIDTH = 48  # tistudio.toy.model.ToyArch.text_width (the toy world sits above this layer)
_CLIP_VOCAB = 49408  # rows after this are embeddings added by a loader, not vocabulary


def guess_family(widths: tuple[int, ...]) -> str:
    for name, spec in FAMILIES.items():
        if widths == tuple(e.width for e in spec.encoders):
            return name
    tiny = next((name for name, w in TINY_TEXT_WIDTHS.items() if w == widths), None)
    if widths == (TOY_TEXT_WIDTH,):
        return f"sd1 (toy model) or {tiny} (tiny test model)" if tiny else "sd1 (toy model)"
    return f"{tiny} (tiny test model)" if tiny else "unknown"


def _nearest(vectors: torch.Tensor, table: torch.Tensor, tokenizer, k: int) -> list[list[str]]:
    """Top-k vocabulary tokens by cosine similarity, for each vector."""
    sims = torch.nn.functional.normalize(vectors, dim=1) @ torch.nn.functional.normalize(table, dim=1).T
    ids = sims.topk(k, dim=1).indices.tolist()
    return [[tokenizer.convert_ids_to_tokens(i).replace("</w>", "") for i in row] for row in ids]


def describe(loaded: Loaded, components=None, top_k: int = 5) -> dict:
    """A plain dict (printable as text or JSON). `components`: a loaded model, optional."""
    emb = loaded.embedding
    info = {
        "trigger": emb.name, "stored_name": loaded.stored_name, "token": loaded.token,
        "files": [str(f) for f in loaded.files], "container": loaded.container, "layout": loaded.layout,
        # The model says best, then what `create` recorded; widths alone cannot tell the toy model
        # (SD1 form, width 48) from a tiny SD2 test model.
        "family": (components.family.name if components is not None
                   else emb.meta.get("family") or guess_family(emb.widths)),
        "widths": list(emb.widths), "vectors": emb.n_vectors,
        "step": emb.step, "sd_checkpoint": emb.sd_checkpoint, "sd_checkpoint_name": emb.sd_checkpoint_name,
        "ignored_keys": loaded.ignored, "meta": dict(emb.meta),
        "norms": [[round(float(n), 4) for n in v.norm(dim=1)] for v in emb.vectors],
    }
    if components is not None:
        emb.check_fits(components.widths, "inspect --model")
        info["model"] = components.name
        info["vocab_median_norm"], info["nearest"] = [], []
        for vectors, encoder in zip(emb.vectors, components.text_encoders):
            table = encoder.get_input_embeddings().weight.detach().float()[:_CLIP_VOCAB]
            info["vocab_median_norm"].append(round(float(table.norm(dim=1).median()), 4))
            info["nearest"].append(_nearest(vectors, table, components.tokenizer, top_k))
    return info


def report(info: dict) -> str:
    """Human-readable text, one fact per line."""
    encoders = ["clip_l", "clip_g"] if len(info["widths"]) == 2 else ["encoder"]
    lines = [
        f"trigger:      {info['trigger']}" + (f"  (stored name {info['stored_name']!r})"
                                              if info["stored_name"] not in (None, info["trigger"]) else ""),
        f"file:         {', '.join(info['files'])}  [{info['container']}, {info['layout']}]",
        f"family:       {info['family']}  width {'+'.join(map(str, info['widths']))}",
        f"vectors:      {info['vectors']}",
        f"step:         {info['step']}",
        f"base model:   {info['sd_checkpoint_name'] or '?'}  [{info['sd_checkpoint'] or 'no hash'}]",
    ]
    if info["token"]:
        lines.append(f"token key:    {info['token']}")
    if info["ignored_keys"]:
        lines.append(f"ignored keys: {', '.join(info['ignored_keys'])} (output-space extras)")
    for key, value in sorted(info["meta"].items()):
        lines.append(f"meta {key}: {str(value)[:100]}")
    for i, norms in enumerate(info["norms"]):
        median = f"  (vocabulary median {info['vocab_median_norm'][i]})" if "vocab_median_norm" in info else ""
        lines.append(f"norms {encoders[i]}: {' '.join(f'{n:.4f}' for n in norms)}{median}")
    if "nearest" in info:
        lines.append(f"nearest tokens in {info['model']}:")
        for i, rows in enumerate(info["nearest"]):
            for j, tokens in enumerate(rows):
                lines.append(f"  {encoders[i]} #{j}: {', '.join(tokens)}")
    return "\n".join(lines)
