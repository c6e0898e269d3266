"""The Train tab's form, derived from TrainConfig's fields: each field becomes a widget spec with the
label, help (its flags named by their labels), choices and group its declaration carries
(config/fields.py), so an option added to the config shows up in the page without UI code. Values
come back as a dict and go through config.from_dict, so the config's own validation and error
messages apply unchanged. Plain Python: the gradio widgets are made in tab_train.py."""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from ..config import (HYPERNETWORK_DEFAULTS, Option, TrainConfig, from_dict, grouped, in_labels, method_defaults,
                      nested)
from ..errors import TIStudioError
from .safety import PathGuard

REQUIRED = ("embedding", "data")
# Fields that are set elsewhere in the page (the model box at the top).
OWNED_BY_PAGE = ("model.model", "model.family")
# Path fields -> what must exist there (None: nothing; a folder to write is made when needed). A
# field whose name ends in one of PATH_SUFFIXES is a path too, so a new one is confined to the root.
PATH_FIELDS = {"embedding": "file", "hypernetwork": "file", "data": "dir", "log_dir": None, "output": None, "val_data": "dir",
               "eval_clip": "dir", "dreamartist.negative": "file", "model.config": "dir"}
PATH_SUFFIXES = ("_dir", "_data", "_path", "_file", "_folder")
_EMBEDDING = TrainConfig()  # the defaults the boxes start at


@dataclass(frozen=True)
class FieldSpec:
    key: str                 # dotted: "steps", "dreamartist.neg_lr_weight", "model.clip_skip"
    kind: str                # text | int | float | bool | switch (on/off/auto) | choice | multi | path
    label: str
    default: object
    optional: bool = False   # None allowed (an empty box means "default")
    choices: tuple = ()
    info: str = ""
    section: str = "run"     # the option's group (config.GROUPS), in the page's order
    must_exist: str | None = None
    custom: bool = False     # a choice that also takes a typed value (template: a name or a file)


SWITCH = ("on", "off")   # a `bool | None` field's choices; the empty "auto" choice is None


def _kind(opt: Option) -> tuple[str, tuple]:
    if opt.key == "template":
        return "choice", tuple(_shipped_templates())
    if opt.kind == "list":
        return "multi", opt.choices
    if opt.choices:
        return "choice", opt.choices
    if opt.key in PATH_FIELDS or opt.name.endswith(PATH_SUFFIXES):
        return "path", ()
    if opt.kind == "bool" and opt.optional:  # None = "the profile decides": a checkbox cannot say it
        return "switch", SWITCH
    return {"bool": "bool", "int": "int", "float": "float"}.get(opt.kind, "text"), ()


def train_fields() -> list[FieldSpec]:
    """One spec per TrainConfig option the page asks for, grouped as config.GROUPS orders them."""
    specs = []
    for opt in (o for opts in grouped().values() for o in opts
                if o.key not in OWNED_BY_PAGE and o.kind != "tables"):  # [[concept]]: a --config file's
        kind, choices = _kind(opt)
        label = opt.label + (" (0 = default)" if opt.optional and kind in ("int", "float") else "")
        specs.append(FieldSpec(opt.key, kind, label, opt.default, opt.optional, choices, in_labels(opt.help), opt.group,
                               PATH_FIELDS.get(opt.key), custom=opt.key == "template"))
    return specs


def _convert(spec: FieldSpec, value, guard: PathGuard):
    if spec.kind == "bool":
        return bool(value)
    if spec.kind == "switch":
        return None if not value else value == SWITCH[0]
    if spec.kind == "multi":
        return tuple(value or ())
    blank = value is None or (isinstance(value, str) and not (value if spec.kind == "text" else value.strip()))
    if blank:  # for text, whitespace is a value (filename_join " ")
        if spec.optional:
            return None
        if spec.key in REQUIRED or spec.default not in ("", None):
            raise TIStudioError(f"{spec.label}: empty; enter a value")
        return value or ""
    if spec.optional and spec.kind in ("int", "float") and float(value) == 0:
        return None  # a number box cannot be empty: 0 stands for "the default" (e.g. the model's size)
    if spec.kind == "int":
        if float(value) != int(float(value)):
            raise TIStudioError(f"{spec.label} {value}: use a whole number")
        return int(float(value))
    if spec.kind == "float":
        return float(value)
    if spec.kind == "path":
        return str(guard.resolve(str(value), spec.label, spec.must_exist))
    return str(value)


def build_train_config(specs: list[FieldSpec], values: list, guard: PathGuard, model: str,
                       family: str | None = None) -> TrainConfig:
    """Widget values (in `specs` order) -> a validated TrainConfig; `model` is the page's model box."""
    given: dict = {"model.model": model, **({"model.family": family} if family else {})}
    # A hypernetwork run trains the hypernetwork file: no embedding is asked for.
    hyper = dict(zip((s.key for s in specs), values)).get("method") == "hypernetwork"
    for spec, value in zip(specs, values):
        if hyper and spec.key == "embedding" and not value:
            continue
        converted = _convert(spec, value, guard)
        if converted is not None:
            given[spec.key] = converted
    data = nested(given)
    if hyper:  # a box left at the embedding default takes the hypernetwork run's own (config.method_defaults)
        data = {k: v for k, v in data.items() if not (k in HYPERNETWORK_DEFAULTS and v == getattr(_EMBEDDING, k))}
    data = method_defaults(data)
    if data.get("template") and data["template"] not in _shipped_templates():
        data["template"] = str(guard.resolve(data["template"], "Prompt template", "file"))
    return from_dict(TrainConfig, data, "Train tab")


def _shipped_templates() -> list[str]:
    from ..data.templates import shipped_names

    return shipped_names()


def example_prompts(template: str, name: str, data_dir: Path | None, regex: str | None = None,
                    join: str = " ", n: int = 6, seed: int = 0) -> list[str]:
    """What the trainer will see: template lines filled with the dataset's captions (first images)."""
    from ..data.captions import caption_for
    from ..data.dataset import scan_images
    from ..data.prompts import fill, process_tags
    from ..data.templates import load_template

    lines = load_template(template, needs_name=False)  # a hypernetwork's template has no [name]
    captions = [""]
    if data_dir is not None:
        images, _ = scan_images(data_dir)
        captions = [caption_for(p, regex, join) for p in images[:n]] or [""]
    rng = random.Random(seed)
    return [fill(lines[i % len(lines)], name, process_tags(captions[i % len(captions)], rng))
            for i in range(n)]
