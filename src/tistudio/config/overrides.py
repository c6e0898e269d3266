"""How option dicts combine before they become a TrainConfig: the one override merge, a
hypernetwork run's own defaults, and what a resumed run may change."""
from __future__ import annotations

import dataclasses
from dataclasses import fields
from typing import Any

from .train_config import HYPERNETWORK_DEFAULTS, TrainConfig

# The options a resumed run may change (--resume): how long it runs, what it writes and how often,
# and where it computes. Every other option shapes the trained vectors, so a resume keeps the run's
# own value from its config.toml and refuses a different one. Names are TrainConfig fields; a nested
# field is "section.field" (e.g. "model.clip_skip").
RESUMABLE = frozenset({
    "steps", "early_stop", "output", "formats", "save_every", "keep_last", "preview_every",
    "preview_prompt", "preview_prompts", "preview_negative", "preview_seed", "preview_steps", "preview_cfg", "preview_sampler",
    "png_embeddings", "plot", "tensorboard", "device", "threads", "heap_reuse",
})


def changes(before: Any, after: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(field, old value, new value) for each field of two configs that differs; nested sections'
    fields as "section.field"."""
    out = []
    for f in fields(before):
        old, new = getattr(before, f.name), getattr(after, f.name)
        if dataclasses.is_dataclass(old):
            out += changes(old, new, f"{prefix}{f.name}.")
        elif old != new:
            out.append((prefix + f.name, old, new))
    return out


def not_resumable(diff: list[tuple[str, Any, Any]]) -> list[tuple[str, Any, Any]]:
    """The changes a resume refuses (see RESUMABLE)."""
    return [d for d in diff if d[0] not in RESUMABLE]


def merge(base: dict, given: dict) -> dict:
    """Options `given` (e.g. on the command line) over `base` (a TOML file or a run's config),
    nested sections merged field by field."""
    sections = [f.name for f in fields(TrainConfig) if dataclasses.is_dataclass(f.default)]
    nested = {k: {**base.get(k, {}), **given.get(k, {})} for k in sections}
    return {**base, **given, **nested}


def nested(values: dict[str, Any]) -> dict:
    """Option values by dotted key ("recipe.loss", as config.options names them) -> a config dict
    with the sections as tables, what merge and from_dict take."""
    out: dict = {}
    for key, value in values.items():
        *sections, name = key.split(".")
        target = out
        for section in sections:
            target = target.setdefault(section, {})
        target[name] = value
    return out


def method_defaults(data: dict) -> dict:
    """`data` with a hypernetwork run's own defaults (HYPERNETWORK_DEFAULTS) where it gives none;
    any other method's options unchanged."""
    if data.get("method") != "hypernetwork":
        return data
    return {**HYPERNETWORK_DEFAULTS, **data}
