"""--preview-prompts FILE: several preview prompts, each with its own settings, drawn into one grid
per preview (RUN/previews/NAME-STEP.png; docs/concepts.md).

One prompt per line in kohya's prompt-file style: the prompt, then optional `--n NEGATIVE`,
`--w WIDTH`, `--h HEIGHT`, `--s STEPS`, `--l CFG`, `--d SEED`, each up to the next option. Blank
lines and lines starting with `#` are skipped. `[name]` in a prompt is the embedding's name (with
several embeddings, one cell per embedding: per_embedding). An option a line does not give comes
from the run's --preview-* options and preview size.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

from PIL import Image

from ..data.prompts import NAME, fill
from ..data.text import read_text_capped
from ..errors import TIStudioError
from ..generate.sample import GenerateOptions

FILE_LIMIT = 256 * 1024
# An option is `--x` standing alone (start of the text or after a space, a space or the end after it).
_OPTION = re.compile(r"(?:^|\s)--([A-Za-z]+)(?=\s|$)")
_FIELDS = {"n": ("negative", str), "w": ("width", int), "h": ("height", int), "s": ("steps", int),
           "l": ("cfg", float), "d": ("seed", int)}
_MEANING = {"n": "a negative prompt", "w": "a width", "h": "a height", "s": "a number of steps",
            "l": "a CFG scale", "d": "a seed"}


@dataclass(frozen=True)
class PreviewPrompt:
    prompt: str
    line: int                       # its line in the file, for messages
    negative: str | None = None     # None: the run's --preview-negative
    width: int | None = None        # None: the run's preview size (BucketedCache.preview_size)
    height: int | None = None
    steps: int | None = None        # None: --preview-steps
    cfg: float | None = None        # None: --preview-cfg
    seed: int | None = None         # None: --preview-seed


def parse_line(text: str, label: str, number: int, factor: int = 8) -> PreviewPrompt:
    """Line `number` of the file `label` names; "LABEL line N" leads every error."""
    where = f"{label} line {number}"
    parts = _OPTION.split(text.strip())
    prompt, values = parts[0].strip(), {}
    if not prompt:
        raise TIStudioError(f"{where}: no prompt before the options; start the line with the prompt text")
    for key, raw in zip(parts[1::2], parts[2::2]):
        raw = raw.strip()
        if key not in _FIELDS:
            raise TIStudioError(f"{where}: unknown option --{key}; use --n --w --h --s --l --d")
        name, kind = _FIELDS[key]
        if name in values:
            raise TIStudioError(f"{where}: --{key} is given twice; keep one")
        try:
            value = kind(raw) if raw or kind is str else None
        except ValueError:
            value = None
        if value is None:
            raise TIStudioError(f"{where}: --{key} {raw!r} is not {_MEANING[key]}; e.g. --{key} "
                                f"{ {'n': 'blurry', 'w': 512, 'h': 512, 's': 20, 'l': 7, 'd': 1}[key]}")
        values[name] = value
    for key, name in (("w", "width"), ("h", "height")):
        if name in values and (values[name] <= 0 or values[name] % factor):
            raise TIStudioError(f"{where}: --{key} {values[name]} must be a positive multiple of {factor}")
    if values.get("steps", 1) < 1 or values.get("seed", 0) < 0:
        raise TIStudioError(f"{where}: --s must be at least 1 and --d 0 or more")
    return PreviewPrompt(prompt, number, **values)


def parse_prompts(text: str, label: str, factor: int = 8) -> tuple[PreviewPrompt, ...]:
    prompts = tuple(parse_line(line, label, number, factor)
                    for number, line in enumerate(text.splitlines(), 1)
                    if line.strip() and not line.strip().startswith("#"))
    if not prompts:
        raise TIStudioError(f"{label} has no prompts (blank lines and # comments are skipped); write one per line")
    return prompts


def load_preview_prompts(path: str, factor: int = 8) -> tuple[PreviewPrompt, ...]:
    """The prompts of --preview-prompts `path`; () when it is "" (the single --preview-prompt)."""
    if not path:
        return ()
    label = f"--preview-prompts {path}"
    if not Path(path).is_file():
        raise TIStudioError(f"{label}: file not found; pass a text file with one prompt per line")
    try:
        text = read_text_capped(path, FILE_LIMIT, "preview prompts file")
    except (OSError, UnicodeDecodeError) as exc:
        raise TIStudioError(f"{label} cannot be read ({exc}); save it as UTF-8 text") from None
    return parse_prompts(text, label, factor)


def per_embedding(prompts: Sequence[PreviewPrompt], names: Sequence[str]) -> tuple[PreviewPrompt, ...]:
    """A run of several embeddings (docs/multi-embedding.md): each prompt with [name] once per
    embedding, in run order, so the grid shows each; a prompt naming its triggers itself stays one."""
    if len(names) < 2:
        return tuple(prompts)
    return tuple(replace(p, prompt=p.prompt.replace(NAME, n)) for p in prompts
                 for n in (names if NAME in p.prompt else names[:1]))


def options_for(p: PreviewPrompt, base: GenerateOptions, name: str, negative_lead: str = "") -> GenerateOptions:
    """`base` (the run's single-preview options) with what the line gives; `negative_lead` is
    DreamArtist's negative embedding, which always leads the negative prompt."""
    negative = base.negative_prompt if p.negative is None else ", ".join(x for x in (negative_lead, p.negative) if x)
    given = {k: v for k, v in (("width", p.width), ("height", p.height), ("steps", p.steps), ("cfg", p.cfg),
                               ("seed", p.seed)) if v is not None}
    return replace(base, prompt=fill(p.prompt, name, ""), negative_prompt=negative, **given)


def grid(images: Sequence[Image.Image]) -> Image.Image:
    """The images in a near-square grid (columns = ceil(sqrt(n))), each centred in a cell as large as
    the largest image; the cells' generation parameters together in `info["parameters"]`."""
    cols = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    cw, ch = max(i.width for i in images), max(i.height for i in images)
    out = Image.new("RGB", (cols * cw, rows * ch))
    for k, image in enumerate(images):
        r, c = divmod(k, cols)
        out.paste(image, (c * cw + (cw - image.width) // 2, r * ch + (ch - image.height) // 2))
    out.info["parameters"] = "\n\n".join(i.info.get("parameters", "") for i in images)
    return out


def preview_grid(prompts: Sequence[PreviewPrompt], base: GenerateOptions, name: str,
                 render: Callable[[GenerateOptions], Image.Image], negative_lead: str = "") -> Image.Image:
    """One cell per prompt, each drawn by `render` (train/preview.py's sampling call)."""
    return grid([render(options_for(p, base, name, negative_lead)) for p in prompts])
