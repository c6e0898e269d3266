"""What a config field says about itself, so the CLI flags, the web form and docs/options.md are all
made from the one declaration: `steps: int = option(3000, "the step to train up to", group="schedule")`.

The help text describes the option without its default: each face renders the default (and the
choices) from the field itself, so neither is typed twice."""
from __future__ import annotations

import dataclasses
from typing import Any

# Group name -> title, in the order the faces show them. The nested sections (model, recipe,
# dreamartist) are groups of their own; a flat TrainConfig field names one of the others.
GROUPS = {
    "run": "What to train, on which images",
    "model": "Model",
    "data": "Data, captions and latents",
    "schedule": "Learning rate, steps and updates",
    "recipe": "Training recipe (docs/recipe.md)",
    "dreamartist": "DreamArtist (docs/dreamartist.md)",
    "preview": "Previews",
    "validation": "Validation and evaluation (docs/when-to-stop.md)",
    "output": "Outputs and snapshots",
    "monitoring": "Monitoring",
    "speed": "Speed and memory (docs/speed.md)",
}


def option(default: Any, help: str, *, group: str, choices: tuple[str, ...] = (), flag: str | None = None,
           label: str | None = None, table: type | None = None) -> Any:
    """A dataclass field with its metadata.

    help: what the option does, without its default (rendered from `default`).
    group: a key of GROUPS; a nested section's fields name their section ("recipe").
    choices: the values a choice option takes (a tuple of config.choices).
    flag: the CLI flag when it is not --field-name; a flag starting --no- stores False.
    label: the web form's label when the field's name, capitalised, does not say it.
    table: for a TOML array of tables ([[concept]]), the dataclass of one table; such a field has
    no flag or widget of its own (the CLI fills it from repeated flags, docs list its keys)."""
    if group not in GROUPS:
        raise ValueError(f"group {group!r}: use one of {', '.join(GROUPS)}")
    meta = {"help": help, "group": group, "choices": tuple(choices), "flag": flag, "label": label,
            "table": table}
    return dataclasses.field(default=default, metadata=meta)
