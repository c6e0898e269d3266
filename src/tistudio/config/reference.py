"""docs/options.md, made from the config's fields: one table per group (option, TOML key, default,
help). `python -m tistudio.config.reference docs/options.md` rewrites it; without a path it prints
it. tests/test_config_options.py fails when the committed file differs."""
from __future__ import annotations

import sys
from dataclasses import fields

from ..atomic import write_text
from .fields import GROUPS
from .options import Option, default_text, grouped

COMMAND = "python -m tistudio.config.reference docs/options.md"
SECTIONS = ("model", "dreamartist", "recipe")  # TrainConfig's nested sections: TOML tables


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _row(opt: Option) -> str:
    default = default_text(opt)
    help_text = opt.help + (f"; one of {', '.join(f'`{c}`' for c in opt.choices)}" if opt.choices else "")
    if opt.flag.startswith("--no-"):
        help_text += f"; `{opt.flag}` turns it off (`{opt.key} = false` in TOML)"
    elif opt.kind == "bool" and opt.optional:  # cli/train.py offers both answers of a tri-state switch
        help_text += f"; `--no-{opt.flag[2:]}` turns it off"
    return (f"| `{opt.flag}` | `{opt.key}` | {_cell(f'`{default}`') if default else ''} | {_cell(help_text)} |")


def _table_keys(opt: Option) -> list[str]:
    """The keys of one `[[KEY]]` table (a field of kind "tables"), which has no flags of its own."""
    rows = []
    for f in fields(opt.table):
        meta = f.metadata
        choices = f"; one of {', '.join(f'`{c}`' for c in meta['choices'])}" if meta["choices"] else ""
        default = f"`{f.default}`" if f.default not in ("", None) else ""
        rows.append(f"| `{f.name}` | {_cell(default)} | {_cell(meta['help'] + choices)} |")
    return [f"Each `[[{opt.key}]]` table in a `--config` file takes these keys:", "",
            "| key | default | help |", "|---|---|---|", *rows, ""]


def reference() -> str:
    lines = [
        "# Training options",
        "",
        f"Generated from the config's fields (src/tistudio/config) by `{COMMAND}`; edit the fields, not this "
        "file. Each option is a `tistudio train` flag, a key of a `--config` TOML file and a field of the web "
        "UI's Train tab (its label there is the config's). A nested section's key sits in its table: "
        "`recipe.loss` is `loss = \"huber\"` under `[recipe]`. A run's `config.toml` has the same keys. "
        "Beside these, `tistudio train` takes `--config FILE`, `--resume RUN_DIR` and `--quiet`.",
        "",
    ]
    for group, opts in grouped().items():
        lines += [f"## {GROUPS[group]}", ""]
        if group in SECTIONS:
            lines += [f"The `[{group}]` table in TOML.", ""]
        lines += ["| option | TOML key | default | help |", "|---|---|---|---|", *map(_row, opts), ""]
        for opt in (o for o in opts if o.table):
            lines += _table_keys(opt)
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if argv:
        write_text(argv[0], reference())
    else:
        sys.stdout.write(reference())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
