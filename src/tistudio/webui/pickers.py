"""Pickers: dropdowns of the models, embeddings, hypernetworks and datasets under the web UI root,
each with a refresh button (↻), that still take a typed path (A1111's dropdowns with 🔄, plus what
each file is: family, vectors, step, which programs load it, the dataset doctor's counts).

Listing stays cheap, so a refresh can run on every page load: the walk reads folder entries and
file headers only (a safetensors JSON header, a diffusers folder's configs, a PNG's text chunks;
never a model's weights), does not descend into model folders or run folders (a run's snapshots
are the Runs tab's), stops at MAX_DEPTH/MAX_FOLDERS, and what it learns about a file is cached per
(path, modification time, size), so an unchanged file is never read twice. Every path comes
through the PathGuard: a folder or file whose real location is outside the root (a symlink out)
is never listed."""
from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..data.dataset import ATTENTION_SUFFIXES
from ..errors import TIStudioError
from ..runs.folder import RUN_MARKERS
from .safety import PathGuard

MAX_DEPTH = 6            # root/a/b/c/d/e/f: deeper trees are not what people keep models in
MAX_FOLDERS = 2000       # a root that is a whole home folder still lists quickly
SHARED_SECONDS = 5       # the pickers of one page load share a walk made within this period
EMBEDDING_MAX_BYTES = 32 << 20   # a 75-vector SDXL embedding is ~1 MB; bigger files are models or LoRAs
MODEL_SUFFIXES = (".safetensors", ".ckpt")
EMBEDDING_SUFFIXES = (".pt", ".bin", ".safetensors", ".png")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
SKIPPED_FOLDERS = ("__pycache__", "node_modules")


@dataclass(frozen=True)
class Entry:
    kind: str            # model | embedding | hypernetwork | dataset
    value: str           # the path as the page shows it: relative to the root where it lies under it
    label: str           # the dropdown's line
    summary: str = ""    # one line of plain text shown as the help line once it is picked
    trigger: str = ""    # embeddings: the word that calls it in a prompt
    family: str = ""     # models, embeddings (as `inspect` names it: "sd1", "sd1 (tiny test model)")
    vectors: int = 0     # embeddings
    step: int = 0        # embeddings, hypernetworks


@dataclass(frozen=True)
class Listing:
    entries: tuple[Entry, ...]
    truncated: bool = False   # the walk stopped at MAX_FOLDERS

    def of(self, kind: str) -> list[Entry]:
        return [e for e in self.entries if e.kind == kind]


def scan(guard: PathGuard, under: str | Path | None = None) -> Listing:
    """Everything pickable under the root (or under the folder `under`, itself under the root)."""
    start = guard.root if under is None else guard.resolve(str(under), "Folder", "dir")
    entries: list[Entry] = []
    folders = 0
    for folder, files, dirs in _walk(guard, start):
        folders += 1
        if folders > MAX_FOLDERS:
            return Listing(tuple(entries), truncated=True)
        names = {f.name for f in files}
        if "model_index.json" in names:
            entries += filter(None, [_cached(guard, folder, "model-folder")])
            dirs.clear()  # its parts are one model, and their .bin/.safetensors are weights
            continue
        if names & set(RUN_MARKERS):
            dirs.clear()  # a run folder: its snapshots and previews belong to the Runs tab
            continue
        found = [e for f in files if f.suffix.lower() in MODEL_SUFFIXES + EMBEDDING_SUFFIXES
                 and (e := _cached(guard, f, "file")) is not None]
        entries += found
        embedded = {e.value for e in found}
        images = [f for f in files if f.suffix.lower() in IMAGE_SUFFIXES and guard.show(f) not in embedded
                  and not f.stem.endswith(ATTENTION_SUFFIXES)]
        if images:
            entries += filter(None, [_cached(guard, folder, "dataset")])
    return Listing(tuple(entries))


def identify(guard: PathGuard, path: str | Path) -> Entry | None:
    """The entry of one path the walk may not reach: the model given on the command line, which
    the guard trusts outside the root."""
    path = Path(path)
    if path.is_dir():
        return _cached(guard, path, "model-folder") if (path / "model_index.json").is_file() else None
    return _cached(guard, path, "file") if path.is_file() else None


def _walk(guard: PathGuard, start: Path):
    """(folder, its files, its sub-folders) top-down in name order; callers may clear the list of
    sub-folders to stop descending. Hidden entries are skipped; links are followed only while
    their target stays under the root, and each real folder is visited once (link loops)."""
    seen: set[Path] = set()
    stack = [(start, 0)]
    while stack:
        folder, depth = stack.pop()
        try:
            real = folder.resolve()
            if not guard.inside(real) or real in seen:
                continue
            seen.add(real)
            with os.scandir(folder) as it:
                children = sorted(it, key=lambda d: d.name)
        except OSError:  # unreadable, or removed while we walk
            continue
        files, dirs = [], []
        for child in children:
            if child.name.startswith(".") or child.name in SKIPPED_FOLDERS:
                continue
            path = folder / child.name
            try:
                # Only a link can lead out of a folder that lies under the root.
                if child.is_symlink() and not guard.inside(path.resolve()):
                    continue  # never listed, never read
                (dirs if child.is_dir() else files if child.is_file() else []).append(path)
            except OSError:
                continue
        yield folder, files, dirs
        if depth < MAX_DEPTH:
            stack += [(d, depth + 1) for d in reversed(dirs)]


def _cached(guard: PathGuard, path: Path, what: str) -> Entry | None:
    """The entry for `path`, read again only when the file (or, for a folder, its files) changed."""
    try:
        if what == "dataset":
            stamp = tuple((p.name, st.st_size, st.st_mtime_ns) for p in sorted(path.iterdir())
                          if p.is_file() and (st := p.stat()))
        elif what == "model-folder":
            # What open_model reads to identify a folder (a missing part counts as 0).
            stamp = tuple(os.stat(f).st_mtime_ns if f.is_file() else 0 for f in (
                path / "model_index.json", path / "unet" / "config.json", path / "text_encoder_2" / "config.json",
                path / "scheduler" / "scheduler_config.json"))
        else:
            st = path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
    except OSError:
        return None
    return _entry(guard, str(path), what, stamp)


@functools.lru_cache(maxsize=4096)
def _entry(guard: PathGuard, path: str, what: str, stamp: tuple) -> Entry | None:
    try:
        return _read_entry(guard, Path(path), what, stamp)
    except Exception:  # noqa: BLE001 - an odd file (a broken config, a library's surprise) is left out
        return None       # of the list; it must never break the list


def _read_entry(guard: PathGuard, p: Path, what: str, stamp: tuple) -> Entry | None:
    if what == "dataset":
        return _dataset(guard, p)
    if what == "model-folder":
        return _model(guard, p, "diffusers folder")
    suffix = p.suffix.lower()
    if suffix in MODEL_SUFFIXES:
        model = _model(guard, p, "single file")
        if model is not None or suffix == ".ckpt":
            return model
    if stamp[1] > EMBEDDING_MAX_BYTES:
        return None
    if suffix == ".png" and not _png_has_embedding(p):
        return None  # an ordinary picture (a dataset's), not worth reading as an embedding
    return _embedding(guard, p) or (_hypernetwork(guard, p) if suffix == ".pt" else None)


def _model(guard: PathGuard, path: Path, what: str) -> Entry | None:
    """A model by the loader's own identification (models/load.open_model reads keys, shapes and
    configs, not weights), or None when the file is no full checkpoint (a LoRA, a VAE, an
    embedding). A pre-zip pickle .ckpt would be read whole to tell: it is listed unidentified."""
    from zipfile import is_zipfile

    from ..models.load import open_model

    shown = guard.show(path)
    if path.suffix.lower() == ".ckpt" and not is_zipfile(path):
        return Entry("model", shown, f"{shown} · family known once loaded", summary="old pickle checkpoint")
    try:
        source = open_model(path)
    except TIStudioError:
        return None
    detail = f"{source.family} · {source.prediction.replace('_prediction', '')} · {what}"
    return Entry("model", shown, f"{shown} · {detail}", detail, family=source.family)


def _png_has_embedding(path: Path) -> bool:
    """A1111 writes its text chunk before the pixels, so PIL finds it without decoding them. A
    chunk beyond PIL's text limits (large SDXL embeddings) counts as one, for the reader to judge."""
    from PIL import Image

    from ..embedding.formats.a1111_png import TEXT_KEY

    try:
        with Image.open(path) as img:
            return TEXT_KEY.decode() in img.info
    except ValueError:
        return True
    except OSError:
        return False


def _embedding(guard: PathGuard, path: Path) -> Entry | None:
    from ..embedding.formats import read_embedding
    from ..embedding.formats.describe import describe
    from .runs import compat_summary

    try:
        info = describe(read_embedding(path))
        summary = compat_summary(path, guard.show)
    except TIStudioError:
        return None
    shown = guard.show(path)
    vectors = f"{info['vectors']} vector{'s' if info['vectors'] != 1 else ''}"
    label = f"{shown} · {info['trigger']} · {info['family']} · {vectors} · step {info['step']}"
    return Entry("embedding", shown, label, _one_line(summary), trigger=info["trigger"],
                 family=str(info["family"]), vectors=int(info["vectors"]), step=int(info["step"]))


def _hypernetwork(guard: PathGuard, path: Path) -> Entry | None:
    from ..hypernetwork import format as hypernetwork_format
    from .runs import compat_summary

    try:
        hn = hypernetwork_format.sniff(path)
        summary = compat_summary(path, guard.show) if hn is not None else ""
    except TIStudioError:
        return None
    if hn is None:
        return None
    shown = guard.show(path)
    layers = ", ".join(f"{x:g}" for x in hn.structure.layer_structure)
    return Entry("hypernetwork", shown, f"{shown} · {hn.name} · layers {layers} · step {hn.step}",
                 _one_line(summary), step=hn.step)


def _one_line(summary: str) -> str:
    """compat_summary's first line as plain text: "loads in: A1111 ✓ tok · Forge ✓ tok · ..."."""
    head = summary.splitlines()[0] if summary else ""
    return "loads in: " + head.split(" loads in: ", 1)[-1].replace("`", "") if head else ""


def _dataset(guard: PathGuard, folder: Path) -> Entry:
    """The doctor's counts: images, their sizes, captions, its verdict."""
    from ..preprocess import check_dataset

    shown = guard.show(folder)
    report = check_dataset(folder)
    s = report.stats
    sizes = "" if not report.images else (f" · {s['min_size']}" if s["min_size"] == s["max_size"]
                                          else f" · {s['min_size']} to {s['max_size']}")
    warnings = sum(f.level == "warning" for f in report.findings)
    verdict = "usable" if report.usable else "not usable"
    label = (f"{shown} · {report.images} image{'s' if report.images != 1 else ''}{sizes} · "
             f"{report.captioned} captioned · {verdict}{f', {warnings} warnings' if warnings else ''}")
    return Entry("dataset", shown, label, label.split(" · ", 1)[-1])


def choices(entries: list[Entry], keep: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(label, value) pairs for a dropdown; values in `keep` (the current value, the model given at
    start) stay choosable even when the listing does not hold them."""
    pairs = [(e.label, e.value) for e in entries]
    listed = {v for _, v in pairs}
    return [(v, v) for v in dict.fromkeys(keep) if v and v not in listed] + pairs


# -- the widgets ----------------------------------------------------------------------------------

# Train-form fields that get a picker, and what each lists.
REFRESH = "↻"
FORM_PICKERS = {"embedding": "embedding", "hypernetwork": "hypernetwork", "data": "dataset",
                "dreamartist.negative": "embedding"}


def listed(ctx, kind: str, fresh: bool = True) -> Listing:
    """The entries of `kind`; models also list the one given on the command line, first. A page
    load refreshes every picker at once: with fresh=False they share one walk of the root."""
    listing = scan(ctx.guard) if fresh else _shared_scan(ctx.guard, int(time.monotonic() // SHARED_SECONDS))
    entries = listing.of(kind)
    if kind == "model" and ctx.default_model:
        given = identify(ctx.guard, ctx.default_model)
        if given is not None and given.value not in {e.value for e in entries}:
            entries.insert(0, given)
    return Listing(tuple(entries), listing.truncated)


@functools.lru_cache(maxsize=4)
def _shared_scan(guard: PathGuard, period: int) -> Listing:
    return scan(guard)


def help_line(listing: Listing, value: str | None, info: str | None) -> str | None:
    """The picked entry's one-line summary, else the field's own help; and why an entry may be
    missing when the walk stopped early."""
    line = details_line(list(listing.entries), value) or info or ""
    if listing.truncated:
        line += (" " if line else "") + (f"(the list stopped after {MAX_FOLDERS:,} folders: type the path, or "
                                         "start the web UI with a narrower --root)")
    return line or None


def dropdown(ctx, kind: str, label: str, value: str = "", info: str | None = None, elem_id: str | None = None,
             scale: int | None = None):
    """A dropdown of `kind` that also takes a typed path, a ↻ button beside it, refreshed on every
    page load too; picking an entry shows its one-line summary as the help line."""
    import gradio as gr

    # The latest listing, the one the dropdown's choices came from: picking looks its entry up
    # there instead of walking the root again (the root is every page's, so one is kept, not one
    # per page).
    last = [listed(ctx, kind)]
    with gr.Column(scale=scale or 1, min_width=200):
        with gr.Row():
            box = gr.Dropdown(choices(list(last[0].entries), (value,)), value=value, label=label,
                              info=help_line(last[0], value, info), allow_custom_value=True, filterable=True,
                              elem_id=elem_id, scale=8)
            button = refresh_button(f"{elem_id}-refresh" if elem_id else None)

    def refresh(current="", fresh=True):
        last[0] = found = listed(ctx, kind, fresh)
        return gr.update(choices=choices(list(found.entries), (current or "", value)),
                         info=help_line(found, current, info))

    def picked(current):
        return gr.update(info=help_line(last[0], current, info))

    button.click(refresh, box, box, show_progress="hidden")
    box.change(picked, box, box, show_progress="hidden")
    gr.on(None, lambda: refresh(value, fresh=False), None, box, show_progress="hidden")  # on page load
    return box


def refresh_button(elem_id: str | None = None):
    """A small ↻ button (an arrow every system font has, unlike the 🔄 emoji)."""
    import gradio as gr

    return gr.Button(REFRESH, size="sm", scale=0, min_width=44, elem_id=elem_id)


def details_line(entries: list[Entry], value: str | None) -> str:
    return next((e.summary for e in entries if e.value == (value or "").strip()), "")


def widget(spec, ctx):
    """The Train form's widget for a path field in FORM_PICKERS (webui/forms.py FieldSpec)."""
    return dropdown(ctx, FORM_PICKERS[spec.key], spec.label, "" if spec.default is None else str(spec.default),
                    spec.info, f"train-{spec.key.replace('.', '-')}")
