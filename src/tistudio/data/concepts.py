"""A run's dataset as concepts (docs/concepts.md): several folders, each with its own repeats, loss
weight, caption source and template, and regularization folders whose loss counts
--prior-loss-weight times (kohya's reg images).

Records are one flat list, concept by concept in the order given (--data first), each concept's
images followed by their greyscale copies, so one latent cache holds them all. An epoch is a list
of draws, each a record index: every training image `repeats` times, then as many regularization
draws, cycling through the reg images (each `repeats` times) until they match the training draws,
so a batch holds reg and training images alike, as kohya draws them. The step -> batch plan
(data/batches.py) shuffles the positions of this list, so the order stays a pure function of
(seed, step) and resume stays exact. One concept with repeats 1 and no reg has the draws 0..n-1,
the record list itself: a plain --data run trains exactly as before concepts existed.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..config import ConceptConfig, TrainConfig
from ..errors import TIStudioError
from .dataset import ImageRecord, grayscale_copies, make_records, scan_images
from .templates import load_template


def concept_configs(cfg: TrainConfig) -> tuple[ConceptConfig, ...]:
    """--data (a concept with every default) followed by the [[concept]] tables."""
    given = ((ConceptConfig(path=cfg.data),) if cfg.data else ()) + tuple(cfg.concept)
    if not given:
        raise TIStudioError("--data is required: a folder of training images (or [[concept]] tables in --config)")
    return given


@dataclass(frozen=True)
class Concept:
    config: ConceptConfig
    start: int                       # its records are start .. stop-1 of the flat list
    stop: int
    lines: tuple[str, ...] | None    # its own template's lines; None: the run's --template

    @property
    def weight(self) -> float:
        return self.config.loss_weight


@dataclass(frozen=True)
class Concepts:
    concepts: tuple[Concept, ...]
    draws: tuple[int, ...]           # record index of each item of an epoch
    weights: tuple[float, ...]       # loss weight of each record (loss_weight, x prior for reg)
    unused_reg: int = 0              # reg images no epoch ever draws (more of them than training draws)

    def __len__(self) -> int:
        return len(self.draws)

    def records_of(self, items: Sequence[int]) -> list[int]:
        """The record indices of epoch items (data/batches.py's item indices)."""
        return [self.draws[i] for i in items]

    def sample_weights(self, indices: Sequence[int]) -> torch.Tensor | None:
        """[B] loss weights of records `indices`, or None when all are 1 (nothing to multiply)."""
        values = [self.weights[i] for i in indices]
        return None if all(v == 1.0 for v in values) else torch.tensor(values, dtype=torch.float32)

    def lines_of(self, indices: Sequence[int]) -> list[tuple[str, ...] | None]:
        return [self._concept(i).lines for i in indices]

    def names_of(self, indices: Sequence[int], default: str) -> list[str]:
        """The embedding name `[name]` becomes in the prompts of records `indices`: their concept's
        `embedding`, else `default` (the run's first embedding; docs/multi-embedding.md)."""
        return [self._concept(i).config.embedding or default for i in indices]

    def training_indices(self) -> list[int]:
        """The records of the training concepts, not the reg ones (validation, fidelity references)."""
        return [i for c in self.concepts if not c.config.is_reg for i in range(c.start, c.stop)]

    def training(self, records: Sequence[ImageRecord]) -> list[ImageRecord]:
        return [records[i] for i in self.training_indices()]

    def _concept(self, index: int) -> Concept:
        return next(c for c in self.concepts if c.start <= index < c.stop)

    def describe(self) -> str | None:
        """One log line with each concept's draws per epoch, or None for a plain single folder."""
        rows = self.table()
        if len(rows) == 1 and rows[0]["repeats"] == 1 and rows[0]["loss_weight"] == 1.0:
            return None
        parts = [f"{r['path']}: {r['images']} images x{r['repeats']} = {r['draws_per_epoch']} draws"
                 f"{' (reg)' if r['is_reg'] else ''}, weight {r['loss_weight']:g}" for r in rows]
        return f"concepts: {'; '.join(parts)}; an epoch is {len(self)} draws"

    def table(self) -> list[dict]:
        """Per concept: folder, images (with copies), repeats, draws per epoch, weight (log, docs)."""
        return [{"path": c.config.path, "images": c.stop - c.start, "repeats": c.config.repeats,
                 "draws_per_epoch": sum(c.start <= i < c.stop for i in self.draws),
                 "loss_weight": self.weights[c.start], "is_reg": c.config.is_reg} for c in self.concepts]


def unknown_embeddings(configs: Sequence[ConceptConfig], names: Sequence[str]) -> list[str]:
    """One line for each concept whose `embedding` is none of the run's (`names`, their triggers)."""
    return [f"[[concept]] {c.path}: embedding = {c.embedding!r} is not one of this run's embeddings "
            f"({', '.join(names)}); use one of their names" for c in configs if c.embedding and c.embedding not in names]


def build_draws(concepts: Sequence[Concept]) -> tuple[tuple[int, ...], int]:
    """(the draws of one epoch, how many reg images are never drawn); see the module docstring."""
    train = [i for c in concepts if not c.config.is_reg for _ in range(c.config.repeats)
             for i in range(c.start, c.stop)]
    pool = [i for c in concepts if c.config.is_reg for _ in range(c.config.repeats) for i in range(c.start, c.stop)]
    if not pool:
        return tuple(train), 0
    reg = [pool[k % len(pool)] for k in range(len(train))]
    return tuple(train + reg), len(set(pool) - set(reg))


def load_concepts(cfg: TrainConfig, *, width: int, height: int, factor: int, needs_name: bool = True,
                  split: Callable[[list[Path]], tuple[list[Path], list[Path]]] | None = None,
                  warn: Callable[[str], None] = lambda text: None) -> tuple[Concepts, list[ImageRecord],
                                                                            list[Path], list[tuple[Path, str]]]:
    """(the concepts, the flat record list, held-out validation images, skipped files with why).
    `split` holds out validation images of each training concept (train/validation.split_images);
    `warn` hears about skipped files and unused reg images."""
    concepts, records, held, skipped = [], [], {}, []
    for cc in concept_configs(cfg):
        images, passed = scan_images(cc.path)
        for path, reason in passed:
            warn(f"skipped {path}: {reason}")
        skipped += passed
        if split is not None and not cc.is_reg:  # reg images are no measure of the concept
            images, out = split(images)
            held.update(dict.fromkeys(out))  # --val-data's images come back for every concept
        own = make_records(images, width=width, height=height, factor=factor, regex=cfg.filename_regex,
                           join=cfg.filename_join, source="filename" if cc.caption_source == "fixed" else cc.caption_source)
        if cc.caption_source == "fixed":
            own = [replace(r, caption=cc.caption) for r in own]
        if cfg.grayscale_copies:
            own += grayscale_copies(own)
        lines = tuple(load_template(cc.template, needs_name=needs_name)) if cc.template else None
        concepts.append(Concept(cc, len(records), len(records) + len(own), lines))
        records += own
    draws, unused = build_draws(concepts)
    if unused:
        warn(f"{unused} regularization image(s) are never drawn: an epoch draws as many reg images as training "
             "images (with repeats); raise the training concepts' repeats or use fewer reg images")
    weights = tuple(c.weight * (cfg.prior_loss_weight if c.config.is_reg else 1.0)
                    for c in concepts for _ in range(c.start, c.stop))
    return Concepts(tuple(concepts), draws, weights, unused), records, list(held), skipped
