"""The Train tab's form, derived from TrainConfig's fields: each field becomes a widget spec, so an
option added to the config (DreamArtist's, validation's...) shows up in the page without UI code.
Values come back as a dict and go through config.from_dict, so the config's own validation and
error messages apply unchanged. Plain Python: the gradio widgets are made in tab_train.py."""
from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, fields
from pathlib import Path

from .. import config as config_module
from ..config import TrainConfig, from_dict
from ..errors import TIStudioError
from .safety import PathGuard

# Shown first, in this order; everything else goes to "Advanced" or its nested section.
MAIN = ("embedding", "hypernetwork", "method", "data", "log_dir", "template", "lr", "batch_size", "grad_accum", "steps",
        "width", "height", "save_every", "preview_every", "png_embeddings", "precision")
REQUIRED = ("embedding", "data")
# Fields that are set elsewhere in the page (the model box at the top).
OWNED_BY_PAGE = ("model.model", "model.family")
NOT_IN_FORM = ("concept",)  # [[concept]] tables come from a --config TOML file (docs/concepts.md)
PATH_FIELDS = {"embedding": "file", "hypernetwork": "file", "data": "dir", "log_dir": None, "output": None, "val_data": "dir",
               "eval_clip": "dir", "dreamartist.negative": "file"}
PATH_SUFFIXES = ("_dir", "_data", "_path", "_file", "_folder")
LABELS = {
    "embedding": "Embedding file", "hypernetwork": "Hypernetwork file (method hypernetwork; lr 0.00001 as A1111)",
    "data": "Dataset folder", "log_dir": "Log folder", "lr": "Learning rate",
    "batch_size": "Batch size", "grad_accum": "Gradient accumulation steps", "steps": "Max steps",
    "save_every": "Save embedding every N steps", "preview_every": "Preview image every N steps",
    "png_embeddings": "Save PNG embeddings with the previews", "precision": "Precision of the frozen model",
    "template": "Prompt template", "output": "Final embedding path (empty: overwrite the embedding)",
}
# Choices for string fields, from the config module's own tuples where it has them.
CHOICES = {
    "precision": "PRECISIONS", "latent_sampling": "LATENT_SAMPLING", "clip_grad_mode": "CLIP_GRAD_MODES",
    "preview_sampler": "SAMPLERS", "method": "METHODS", "profile": "PROFILES",
    "rec_timestep_weight": "REC_TIMESTEP_WEIGHTS", "loss": "LOSSES", "loss_weighting": "LOSS_WEIGHTINGS",
    "timestep_sampling": "TIMESTEP_SAMPLINGS", "optimizer": "OPTIMIZERS", "lr_scheduler": "LR_SCHEDULERS",
    "norm": "NORMS",
}
FIXED_CHOICES = {"family": ("sd1", "sd2", "sdxl"), "prediction": ("epsilon", "v_prediction")}
FORMAT_CHOICES = ("a1111-pt", "safetensors")


@dataclass(frozen=True)
class FieldSpec:
    key: str                 # dotted: "steps", "dreamartist.neg_lr_weight", "model.clip_skip"
    kind: str                # text | int | float | bool | choice | multi | path
    label: str
    default: object
    optional: bool = False   # None allowed (an empty box means "default")
    choices: tuple = ()
    info: str = ""
    section: str = "main"    # main | advanced | the nested dataclass's field name
    must_exist: str | None = None
    custom: bool = False     # a choice that also takes a typed value (template: a name or a file)


def _help_texts() -> dict[str, str]:
    """The CLI's help text per config field, so both faces describe an option the same way."""
    from ..cli import train as cli_train

    out = {}
    for table in (cli_train.OPTIONS, cli_train.MODEL_OPTIONS, cli_train.RECIPE_OPTIONS):
        for flag, (dest, _typ, text) in table.items():
            if not flag.startswith("--no-"):  # "--no-plot" describes the opposite of the field
                out[dest] = text
    return out


def _kind(f: dataclasses.Field, key: str, name: str, value) -> tuple[str, bool, tuple]:
    annotation = str(f.type)
    optional = "None" in annotation
    const = CHOICES.get(name)
    if const and hasattr(config_module, const):
        return "choice", optional, tuple(getattr(config_module, const))
    if name in FIXED_CHOICES:
        return "choice", optional, FIXED_CHOICES[name]
    if name == "template":
        return "choice", optional, tuple(_shipped_templates())
    if name == "formats":
        return "multi", optional, FORMAT_CHOICES
    if key in PATH_FIELDS or name.endswith(PATH_SUFFIXES):
        return "path", optional, ()
    for token, kind in (("bool", "bool"), ("int", "int"), ("float", "float")):
        if annotation.split("|")[0].strip() == token or isinstance(value, bool) and token == "bool":
            return kind, optional, ()
    return "text", optional, ()


def _label(name: str, optional_number: bool = False) -> str:
    label = LABELS.get(name, name.replace("_", " ").capitalize())
    return label + " (0 = default)" if optional_number else label


def train_fields(cls=TrainConfig) -> list[FieldSpec]:
    helps = _help_texts()
    specs = []

    def walk(cls, prefix: str, section: str | None):
        for f in fields(cls):
            key = prefix + f.name
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            if dataclasses.is_dataclass(default):
                walk(type(default), key + ".", "advanced" if f.name == "model" else f.name)
                continue
            if key in OWNED_BY_PAGE or key in NOT_IN_FORM:
                continue
            kind, optional, choices = _kind(f, key, f.name, default)
            sec = section or ("main" if f.name in MAIN else "advanced")
            label = _label(f.name, optional and kind in ("int", "float"))
            specs.append(FieldSpec(key, kind, label, default, optional, choices,
                                   helps.get(f.name, ""), sec, PATH_FIELDS.get(key),
                                   custom=f.name == "template"))

    walk(cls, "", None)
    order = {name: i for i, name in enumerate(MAIN)}
    specs.sort(key=lambda s: (s.section != "main", order.get(s.key, len(order))))
    return specs


def _convert(spec: FieldSpec, value, guard: PathGuard):
    if spec.kind == "bool":
        return bool(value)
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
    data: dict = {"model": {"model": model, **({"family": family} if family else {})}}
    # A hypernetwork run trains the hypernetwork file: no embedding is asked for.
    hyper = dict(zip((s.key for s in specs), values)).get("method") == "hypernetwork"
    for spec, value in zip(specs, values):
        if hyper and spec.key == "embedding" and not value:
            continue
        target = data
        *parents, leaf = spec.key.split(".")
        for part in parents:
            target = target.setdefault(part, {})
        converted = _convert(spec, value, guard)
        if converted is not None:
            target[leaf] = converted
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
