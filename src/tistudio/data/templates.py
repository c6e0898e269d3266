"""Prompt templates: one prompt per line with `[name]` (the embedding) and `[filewords]` (the caption).

`--template` takes the name of a shipped template (`src/tistudio/templates/NAME.txt`) or a path to a
text file. Blank lines are ignored; every other line is a candidate prompt, used verbatim.
"""
from __future__ import annotations

import difflib
import re
from importlib import resources
from pathlib import Path

from ..errors import TIStudioError
from .prompts import FILEWORDS, NAME
from .text import read_text_capped

TEMPLATE_LIMIT = 1024 * 1024

FILEWORDS_SUFFIX = "_filewords"


def _shipped_dir():
    return resources.files("tistudio").joinpath("templates")


def shipped_names() -> list[str]:
    return sorted(p.name[:-4] for p in _shipped_dir().iterdir() if p.name.endswith(".txt"))


def _read_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _resolve(name_or_path: str | Path) -> tuple[str, str]:
    """(label for messages, file text). A shipped name wins over a same-named file in the cwd."""
    value = str(name_or_path)
    if value in shipped_names():
        return f"template {value!r}", _shipped_dir().joinpath(f"{value}.txt").read_text(encoding="utf-8")
    path = Path(value)
    if not path.is_file():
        raise TIStudioError(f"--template {value!r} is neither a shipped template "
                            f"({', '.join(shipped_names())}) nor an existing file; pick one of those "
                            "names or pass the path to a .txt template")
    try:
        return f"template file {path}", read_text_capped(path, TEMPLATE_LIMIT, "template file")
    except (OSError, UnicodeDecodeError) as exc:
        raise TIStudioError(f"template file {path} cannot be read ({exc}); save it as UTF-8 text") from None


# A word in square brackets, e.g. [nmae]: a placeholder the user meant but mistyped. Only [name]
# and [filewords] are replaced (prompts.fill); any other would reach CLIP as literal text.
_TAG = re.compile(r"\[([A-Za-z_]+)\]")


def _check_tags(label: str, lines: list[str]) -> None:
    known = (NAME, FILEWORDS)
    for number, line in enumerate(lines, 1):
        for match in _TAG.finditer(line):
            if match.group(0) not in known:
                near = difflib.get_close_matches(match.group(0).lower(), known, n=1, cutoff=0.5)
                hint = f"did you mean {near[0]}? " if near else ""
                raise TIStudioError(f"{label} line {number}: unknown placeholder {match.group(0)}; {hint}"
                                    f"templates know only {' and '.join(known)}")


def load_template(name_or_path: str | Path) -> list[str]:
    label, text = _resolve(name_or_path)
    lines = _read_lines(text)
    _check_tags(label, lines)
    # A1111 defect 8: a template without [name] trains nothing, then crashes much later.
    if not any("[name]" in line for line in lines):
        raise TIStudioError(f"{label} has no line containing [name], so the embedding would never be "
                            "in a prompt; add [name] to its lines")
    return lines


def plain_counterpart(name_or_path: str | Path) -> list[str]:
    """The template without `_filewords` (`style_filewords` -> `style`, `x/foo_filewords.txt` ->
    `x/foo.txt`), for DreamArtist's "positive filewords only" negative prompt. Lines pair up by index,
    so both files must have the same number of lines. A template whose name does not end in
    `_filewords` is its own counterpart."""
    value = str(name_or_path)
    shipped = value in shipped_names()
    stem = value if shipped else Path(value).stem
    if not stem.endswith(FILEWORDS_SUFFIX):
        return load_template(name_or_path)
    lines = load_template(name_or_path)
    plain_stem = stem[: -len(FILEWORDS_SUFFIX)]
    plain = plain_stem if shipped else str(Path(value).with_name(plain_stem + Path(value).suffix))
    if not shipped and not Path(plain).is_file():
        raise TIStudioError(f"template file {value} needs its counterpart {plain} (the same lines "
                            "without [filewords]) for positive-filewords-only; create it")
    plain_lines = load_template(plain)
    if len(lines) != len(plain_lines):
        raise TIStudioError(f"templates {value!r} and {plain!r} pair up line by line but have "
                            f"{len(lines)} and {len(plain_lines)} lines; give them the same number")
    return plain_lines
