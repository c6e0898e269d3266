"""Configs to and from plain dicts and TOML (tomli_w for writing), with every unknown key and
wrong-typed value named with its fix."""
from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any

from ..errors import TIStudioError


def to_dict(cfg: Any) -> dict:
    """Plain TOML-able dict (None values dropped, tuples as lists)."""
    out = {}
    for f in fields(cfg):
        v = getattr(cfg, f.name)
        if dataclasses.is_dataclass(v):
            v = to_dict(v)
        elif isinstance(v, tuple):  # a list of strings, or of tables ([[concept]])
            v = [to_dict(x) if dataclasses.is_dataclass(x) else x for x in v]
        if v is not None:
            out[f.name] = v
    return out


# Annotation word -> (accepted Python types, what to tell a person). bool is an int in Python, so
# it is refused explicitly where a number is expected (`steps = true` is a mistake, not 1).
_KINDS = {"int": ((int,), "a whole number"), "float": ((int, float), "a number"),
          "str": ((str,), "a quoted string"), "bool": ((bool,), "true or false")}


def annotation_words(f: dataclasses.Field) -> list[str]:
    """The words of a field's annotation, e.g. ["int", "None"] (annotations are postponed: strings)."""
    return [w.strip() for w in str(f.type).split("|")]


def _typed(f: dataclasses.Field, value: Any, source: str) -> Any:
    """`value` checked against the field's annotation, so a TOML `steps = "many"` is named with its
    fix instead of failing inside validation."""
    words = annotation_words(f)
    if any(w.startswith("tuple") for w in words):
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise TIStudioError(f"{source}: {f.name} = {_toml_value(value)}: give a list of strings, e.g. "
                            f"{f.name} = {_toml_value(list(f.default) if f.default else ['...'])}")
    kinds = [_KINDS[w] for w in words if w in _KINDS]
    if not kinds or (value is None and "None" in words):
        return value  # nested sections and None are the dataclass's business
    if "str" in words and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # lr = 0.01 or cfg = 3 in TOML: the grammar reads the same text
    for types, _ in kinds:
        if isinstance(value, types) and (bool in types or not isinstance(value, bool)):
            return float(value) if float in types and not isinstance(value, float) else value
    example = f.default if f.default is not None and not dataclasses.is_dataclass(f.default) else None
    hint = f"; e.g. {f.name} = {_toml_value(example)}" if example is not None else ""
    raise TIStudioError(f"{source}: {f.name} = {_toml_value(value)} is not {' or '.join(k[1] for k in kinds)}{hint}")


def _toml_value(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (str, bool, list, tuple)) else repr(value)


def from_dict(cls, data: dict, source: str = "config"):
    """Build `cls` from a dict, naming any unknown key so typos are not silently ignored, and any
    value of the wrong type with an example of the right one."""
    known = {f.name: f for f in fields(cls)}
    kwargs = {}
    for key, value in data.items():
        key = key.replace("-", "_")
        if key not in known:
            raise TIStudioError(f"{source}: unknown option {key!r}; known: {', '.join(sorted(known))}")
        sub = known[key].default
        if known[key].metadata.get("table"):
            value = _tables(known[key], value, source)
        elif dataclasses.is_dataclass(sub):
            if not isinstance(value, dict):
                raise TIStudioError(f"{source}: {key} must be a table ([{key}] with its own options)")
            value = from_dict(type(sub), value, source)
        else:
            value = _typed(known[key], value, source)
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise TIStudioError(f"{source}: {exc}") from None


def _tables(f: dataclasses.Field, value: Any, source: str) -> tuple:
    """A TOML array of tables ([[concept]]) -> a tuple of its dataclass; one [concept] table is one."""
    table, key = f.metadata["table"], f.name
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, (dict, table)) for v in value):
        raise TIStudioError(f"{source}: {key} must be tables: [[{key}]] with path = \"DIR\" and its options")
    return tuple(v if isinstance(v, table) else from_dict(table, v, f"{source} [[{key}]] #{i}")
                 for i, v in enumerate(value, 1))


def load_toml(path: str | Path) -> dict:
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TIStudioError(f"--config {path}: file not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise TIStudioError(f"--config {path}: not valid TOML ({exc})") from None


def dump_toml(cfg: Any) -> str:
    import tomli_w  # only writing needs it; reading is the standard library's tomllib

    return tomli_w.dumps(to_dict(cfg))
