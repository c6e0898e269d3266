"""The options as the faces see them: one record per TrainConfig field (nested sections' fields as
"section.field"), read from the fields' metadata (config/fields.py). The CLI builds its flags from
these, the web form its widgets, config.reference the docs; messages go from flags to labels here."""
from __future__ import annotations

import dataclasses
import functools
import re
from dataclasses import dataclass, fields
from typing import Any

from .fields import GROUPS
from .toml_io import annotation_words
from .train_config import TrainConfig


@dataclass(frozen=True)
class Option:
    key: str                 # the TOML key: "steps", "recipe.loss" (dotted keys are valid TOML)
    group: str               # a key of fields.GROUPS
    flag: str                # "--steps"; a --no-X flag stores False
    help: str
    label: str               # the web form's label
    default: Any
    kind: str                # str | int | float | bool | list (a tuple of strings) | tables ([[concept]])
    optional: bool           # None is a value ("decided elsewhere": detected, from the profile...)
    choices: tuple[str, ...] = ()
    table: type | None = None   # kind "tables": the dataclass of one [[table]]

    @property
    def name(self) -> str:
        return self.key.rpartition(".")[2]

    @property
    def dest(self) -> str:
        """An attribute name unique across sections (model.config is not the CLI's --config)."""
        return self.key.replace(".", "__")


def _kind(f: dataclasses.Field) -> str:
    if f.metadata.get("table"):
        return "tables"
    words = annotation_words(f)
    if any(w.startswith("tuple") for w in words):
        return "list"
    return next(w for w in words if w in ("bool", "int", "float", "str"))


def _records(cls, prefix: str) -> list[Option]:
    out = []
    for f in fields(cls):
        if dataclasses.is_dataclass(f.default):
            out += _records(type(f.default), f"{prefix}{f.name}.")
            continue
        meta = f.metadata
        if "group" not in meta:  # every face is made from the metadata: a bare field has no flag, label or help
            raise TypeError(f"{cls.__name__}.{f.name}: declare it with config.option(default, help, group=...)")
        out.append(Option(prefix + f.name, meta["group"], meta["flag"] or "--" + f.name.replace("_", "-"),
                          meta["help"], meta["label"] or f.name.replace("_", " ").capitalize(), f.default,
                          _kind(f), "None" in annotation_words(f), meta["choices"], meta["table"]))
    return out


@functools.cache
def all_options() -> tuple[Option, ...]:
    """Every option of TrainConfig, in declaration order."""
    return tuple(_records(TrainConfig, ""))


def grouped() -> dict[str, list[Option]]:
    """Group name -> its options, groups in GROUPS order."""
    out: dict[str, list[Option]] = {g: [] for g in GROUPS}
    for opt in all_options():
        out[opt.group].append(opt)
    return {g: opts for g, opts in out.items() if opts}


def find(key: str) -> Option | None:
    return next((o for o in all_options() if o.key == key), None)


def option_name(key: str) -> str:
    """The flag of a config field ("dreamartist.cfg" -> "--cfg"), for messages."""
    opt = find(key)
    return opt.flag if opt else "--" + key.rpartition(".")[2].replace("_", "-")


def default_text(opt: Option) -> str:
    """The default as a person types it; "" where there is none to show (None, an empty string)."""
    value = opt.default
    if value is None or value == "":
        return ""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ", ".join(value)
    if isinstance(value, str) and value.strip() != value:
        return repr(value)
    return str(value)


_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def in_labels(message: str) -> str:
    """`message` with each option flag replaced by the option's label ("--steps 0: must be at least
    1" -> "Max steps 0: must be at least 1"), for a face without flags (the web UI). Text in
    backticks is a command line and keeps its flags."""
    labels = {o.flag: o.label for o in all_options()}
    parts = message.split("`")
    for i in range(0, len(parts), 2):
        parts[i] = _FLAG.sub(lambda m: labels.get(m.group(0), m.group(0)), parts[i])
    return "`".join(parts)
