"""Which objective a run trains (TrainConfig.method), with the embeddings it needs.

DreamArtist trains a pair: --embedding NAME.<ext> (positive) and, unless --negative names another
file, NAME-neg.<ext> beside it (the same extension first, then any format we read), as
`tistudio create NAME --method dreamartist` writes them. A hypernetwork run trains --hypernetwork
FILE instead of an embedding (objectives/hypernetwork.py). Textual Inversion trains one embedding
or several (docs/multi-embedding.md), each with its own lr_scale and stop_step.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ...config import TrainConfig
from ...data.templates import plain_counterpart
from ...embedding.embedding import Embedding
from ...embedding.formats import load_embedding
from ...errors import TIStudioError
from ...models.components import Components
from ...models.conditioning import PromptEncoder
from ...runs.folder import NEG_SUFFIX
from .base import TrainableEmbedding

_EXTENSIONS = (".pt", ".safetensors", ".bin", ".png")


def negative_path(cfg: TrainConfig) -> Path:
    if cfg.dreamartist.negative:
        path = Path(cfg.dreamartist.negative)
        if not path.is_file():
            raise TIStudioError(f"--negative {path}: file not found; pass the NAME-neg embedding made by "
                                "`tistudio create NAME --method dreamartist`")
        return path
    pos = Path(cfg.embedding)
    for ext in dict.fromkeys((pos.suffix.lower(), *_EXTENSIONS)):
        candidate = pos.with_name(pos.stem + NEG_SUFFIX + ext)
        if candidate.is_file():
            return candidate
    raise TIStudioError(f"--method dreamartist needs the negative embedding {pos.stem}{NEG_SUFFIX}{pos.suffix} "
                        f"beside {pos}; create the pair with `tistudio create {pos.stem} --method dreamartist` "
                        "or pass --negative FILE")


def build_objective(cfg: TrainConfig, c: Components, trained: list[Embedding], device: torch.device,
                    lines: list[str], pixels=None):
    """`trained`: session.load_trained's list, one per TrainConfig.embedding_tables (a hypernetwork run's
    one file; several only for --method ti, config/validation.py)."""
    encoder = PromptEncoder(c, cfg.model.clip_skip)
    positive = trained[0]
    if cfg.method == "hypernetwork":
        from .hypernetwork import HypernetworkObjective, TrainableHypernetwork

        return HypernetworkObjective(c, encoder, TrainableHypernetwork(positive, device), cfg.seed)
    if cfg.method == "ti":
        from .ti import TIObjective

        return TIObjective(c, encoder, [TrainableEmbedding(e, device, t.lr_scale, t.stop_step)
                                        for e, t in zip(trained, cfg.embedding_tables)])
    from .dreamartist import DreamArtistObjective

    da = cfg.dreamartist
    neg_file = negative_path(cfg)
    negative = load_embedding(neg_file)
    negative.check_fits(c.widths, str(neg_file))
    if negative.name == positive.name:
        raise TIStudioError(f"{neg_file}: the negative embedding has the same trigger {negative.name!r} as "
                            f"the positive one; rename it to {positive.name}{NEG_SUFFIX}")
    if da.reconstruction and getattr(c.unet, "is_gradient_checkpointing", False):
        # Checkpointing was chosen (--gradient-checkpointing or the --profile): the VAE decoder's
        # backward then dominates reconstruction memory, so checkpoint it too.
        c.vae.enable_gradient_checkpointing()
    plain = plain_counterpart(cfg.template) if da.neg_plain_template else None
    return DreamArtistObjective(c, encoder, TrainableEmbedding(positive, device),
                                TrainableEmbedding(negative, device, lr_weight=da.neg_lr_weight),
                                da, lines, plain, pixels)


def ema_decays(cfg: TrainConfig, objective) -> dict[str, float]:
    """{embedding name: decay}: --ema for the positive (or each Textual Inversion) embedding, --ema-neg
    (default --ema) for DreamArtist's negative."""
    decays = {e.name: cfg.ema for e in objective.embeddings}
    if cfg.method == "dreamartist":
        neg = cfg.dreamartist.ema_neg
        decays[objective.embeddings[1].name] = cfg.ema if neg is None else neg
    return {k: v for k, v in decays.items() if v > 0}
