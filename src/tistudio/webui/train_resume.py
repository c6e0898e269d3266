"""Resume on the Train tab, as `tistudio train --resume` does it: the run's own config.toml is the
config; only the options config.RESUMABLE names (how long, what is written and how often, where it
computes) may change. Choosing a run loads its config into the form and makes every other field
read-only; Resume takes the resumable fields the user changed on top of the stored config
(train/session.py config_for_resume, the one owner of that rule), so the run continues exactly and
its config.toml is not rewritten with the form's other values."""
from __future__ import annotations

from pathlib import Path

from ..config import RESUMABLE, TrainConfig, from_dict, load_toml, nested
from ..errors import TIStudioError
from ..runs.folder import RunFolder
from ..runs.identity import folder_for
from ..train.session import config_for_resume, show
from . import runs as run_files
from .context import Context
from .forms import SWITCH, FieldSpec, build_train_config

NEW_RUN = ("New run", "")


def _value(cfg, key: str):
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def form_values(specs: list[FieldSpec], cfg: TrainConfig, show=str) -> list:
    """`cfg` as the form's widgets hold it (build_train_config's way back): empty text and 0 for
    unset optional values, lists for multiple choices, paths through `show` (relative to the root)."""
    out = []
    for spec in specs:
        v = _value(cfg, spec.key)
        if spec.kind == "path" and v:
            out.append(show(v))
        elif spec.kind == "bool":
            out.append(bool(v))
        elif spec.kind == "switch":
            out.append("" if v is None else SWITCH[0] if v else SWITCH[1])
        elif spec.kind == "multi":
            out.append(list(v or ()))
        elif spec.kind in ("int", "float"):
            out.append(0 if v is None else v)
        else:
            out.append("" if v is None else str(v))
    return out


def choices(ctx: Context, log_dir) -> list[tuple[str, str]]:
    """The run folders under the form's log folder, newest first, labelled with their last step."""
    folder = ctx.guard.resolve(log_dir or "runs", "Log folder")
    found = [p for p in folder.iterdir() if RunFolder.open(p).config.is_file()] if folder.is_dir() else []
    out = [NEW_RUN]
    for path in sorted(found, key=lambda p: p.stat().st_mtime, reverse=True):
        rows = run_files.loss_rows(path)
        out.append((f"{path.name} (step {int(rows[-1]['step'])})" if rows else f"{path.name} (no step yet)",
                    ctx.guard.show(path)))
    return out


def stored(ctx: Context, run: str) -> tuple[Path, TrainConfig]:
    """The chosen run folder and the config it was trained with."""
    root = ctx.guard.resolve(run, "Run to continue", "dir")
    path = RunFolder.open(root).config
    if not path.is_file():
        raise TIStudioError(f"Run to continue {run}: no config.toml there; pick a run from the list (refresh it)")
    return root, from_dict(TrainConfig, load_toml(path), ctx.guard.show(path))


def several_note(ctx: Context, cfg: TrainConfig) -> str:
    """The form holds one embedding; a stored run of several (docs/multi-embedding.md) says so, and
    Resume continues all of them (config_for_resume starts from the stored config)."""
    if not cfg.embeddings:
        return ""
    files = ", ".join(f"`{ctx.guard.show(t.path)}`" for t in cfg.embedding_tables)
    return (f" This run trains {len(cfg.embedding_tables)} embeddings ({files}); the form has room for one, and "
            "**Resume** continues all of them as its config.toml has them (read-only here).")


def locked(spec: FieldSpec) -> bool:
    """Read-only while a run is chosen: resume may not change it."""
    return spec.key not in RESUMABLE


def _confined(ctx: Context, specs: list[FieldSpec], cfg: TrainConfig) -> None:
    """Every path the resumed run opens lies under the root, as training will open it (a CLI run's
    relative paths start at the folder it ran in, not at the root)."""
    ctx.model_path(str(Path(cfg.model.model).absolute()))
    for spec in specs:
        value = _value(cfg, spec.key)
        if spec.kind == "path" and value:
            ctx.guard.resolve(str(Path(value).absolute()), spec.label)
    for table in cfg.embeddings:  # a stored run's further embeddings (the form shows the first): their finals too
        ctx.guard.resolve(str(Path(table.path).absolute()), "Embedding file")


def config(ctx: Context, specs: list[FieldSpec], run: str, values: list) -> tuple[Path, TrainConfig, list]:
    """The run to continue (the chosen one, else the folder training chose for the form's file), its
    stored config with the resumable fields the user changed, and those changes."""
    if run:
        root, before = stored(ctx, run)
    else:
        cfg = build_train_config(specs, values, ctx.guard, ctx.default_model or "model")
        root = folder_for(cfg.log_dir, cfg.trained_file).root
        if not RunFolder.open(root).config.is_file():
            raise TIStudioError(f"Resume: {ctx.guard.show(root)} holds no run yet; press Train to start one, or "
                                "pick a run under Continue a run")
        root, before = stored(ctx, ctx.guard.show(root))
    loaded = form_values(specs, before, ctx.guard.show)  # as load_run put them in the form
    # The form's values converted as for a new run (fields read-only here hold the stored values).
    form = build_train_config(specs, values, ctx.guard, ctx.model_path(str(Path(before.model.model).absolute())),
                              before.model.family)
    changed = {s.key: _value(form, s.key) for s, new, old in zip(specs, values, loaded)
               if not locked(s) and new != old}
    cfg, diff = config_for_resume(root, nested(changed), label=lambda key: next(
        (s.label for s in specs if s.key == key), key))
    _confined(ctx, specs, cfg)
    return root, cfg, diff


def describe(diff: list, specs: list[FieldSpec]) -> str:
    labels = {s.key: s.label for s in specs}
    return "; ".join(f"{labels.get(k, k)} {show(new)} (was {show(old)})" for k, old, new in diff)
