"""The one owner of output names. A run folder LOG_DIR/NAME/ holds:

    config.toml      the resolved configuration (what --resume continues with)
    run.json         whose run it is: the embedding's path and hashes (identity.py)
    .lock            present while a process trains here (lock.py)
    loss.csv  evaluations.csv  summary.json  loss.png  tensorboard/  latents/
    state.pt         the exact-resume state, written last at each save point
    embeddings/NAME-STEP.<ext>, NAME-best.<ext>, NAME-init.safetensors (and NAME-neg-… for DreamArtist)
    hypernetworks/NAME-STEP.pt, NAME-best.pt   a hypernetwork run's, instead of embeddings/
                                 (A1111's folder name; the .pt is its only format)
    images/NAME-STEP.png         previews
    previews/NAME-STEP.png       --preview-prompts grids (one cell per prompt)
    image_embeddings/NAME-STEP.png

NAME is the embedding's stored name (its trigger), not its file name: they differ for PNG
embeddings and renamed files. The finished files go beside --output (or --embedding) and their
DreamArtist partner follows the positive's file name: --output out/cat.pt -> out/cat-neg.pt,
and the best files beside them -> out/cat-best.pt, out/cat-neg-best.pt. A finished hypernetwork
is --output, else the --hypernetwork file itself (A1111 overwrites models/hypernetworks/NAME.pt),
with NAME-best.pt beside it. A run of several embeddings (docs/multi-embedding.md) names the folder
after the first; every embedding's files in it take its own NAME, and each other embedding's
finished file is NAME.<ext> beside its own file, or in --output's folder (embedding_finals)."""
from __future__ import annotations

import glob
import json
import re
from pathlib import Path
from typing import Sequence

from ..config import TrainConfig
from ..embedding.formats import FORMATS

CONFIG_FILE = "config.toml"
IDENTITY_FILE = "run.json"
LOCK_FILE = ".lock"
LOSS_FILE = "loss.csv"
EVAL_FILE = "evaluations.csv"
SUMMARY_FILE = "summary.json"
STATE_FILE = "state.pt"
PLOT_FILE = "loss.png"
BOARD_DIR = "tensorboard"
LATENTS_DIR = "latents"
HYPERNETWORKS_DIR = "hypernetworks"
HYPERNETWORK_SUFFIX = ".pt"
NEG_SUFFIX = "-neg"       # DreamArtist's negative: NAME-neg
BEST_SUFFIX = "-best"
INIT_SUFFIX = "-init"
# Files whose presence makes a folder a run folder (an empty or absent folder is free to use).
RUN_MARKERS = (IDENTITY_FILE, CONFIG_FILE, LOSS_FILE, STATE_FILE, SUMMARY_FILE)
EMBEDDING_SUFFIXES = (".pt", ".safetensors", ".bin")
# NAME-STEP.ext (ext may be double, e.g. .pt.optim); the name may hold dashes and dots itself.
_SNAPSHOT_RE = re.compile(r"^.+-(\d+)(?:\.[^-]+)?$")


def ext(fmt: str) -> str:
    return FORMATS[fmt][0]


class RunFolder:
    """Paths of one run folder. `name` is the positive (or first) embedding's stored name; files of
    another embedding of the run (DreamArtist's negative, an [[embeddings]] table's) take that
    embedding's own name."""

    def __init__(self, root: str | Path, name: str):
        self.root = Path(root)
        self.name = name
        self.embeddings = self.root / "embeddings"
        self.images = self.root / "images"
        self.preview_grids = self.root / "previews"
        self.image_embeddings = self.root / "image_embeddings"
        self.hypernetworks = self.root / HYPERNETWORKS_DIR
        self.config = self.root / CONFIG_FILE
        self.identity = self.root / IDENTITY_FILE
        self.lock = self.root / LOCK_FILE
        self.loss_csv = self.root / LOSS_FILE
        self.evaluations = self.root / EVAL_FILE
        self.summary = self.root / SUMMARY_FILE
        self.state = self.root / STATE_FILE
        self.plot = self.root / PLOT_FILE
        self.board = self.root / BOARD_DIR
        self.latents = self.root / LATENTS_DIR

    @classmethod
    def open(cls, root: str | Path) -> "RunFolder":
        """An existing folder, named as its run.json says (else by the folder, as older runs were)."""
        root = Path(root)
        try:
            name = json.loads((root / IDENTITY_FILE).read_text(encoding="utf-8"))["name"]
        except (OSError, ValueError, KeyError, TypeError):
            name = root.name
        return cls(root, str(name))

    def is_run(self) -> bool:
        return any((self.root / marker).exists() for marker in RUN_MARKERS)

    # -- names ----------------------------------------------------------------------------
    def snapshot(self, step: int, fmt: str, name: str | None = None) -> Path:
        """embeddings/NAME-STEP.<ext>; its stored step is STEP (A1111 stored STEP-1)."""
        return self.embeddings / f"{name or self.name}-{step}{ext(fmt)}"

    def best(self, fmt: str, name: str | None = None) -> Path:
        return self.embeddings / f"{name or self.name}{BEST_SUFFIX}{ext(fmt)}"

    def init_file(self, name: str | None = None) -> Path:
        """The vectors the run began from (drift is measured from them, also after a resume)."""
        return self.embeddings / f"{name or self.name}{INIT_SUFFIX}.safetensors"

    def hypernetwork_snapshot(self, step: int, name: str | None = None) -> Path:
        """hypernetworks/NAME-STEP.pt; its stored step is STEP."""
        return self.hypernetworks / f"{name or self.name}-{step}{HYPERNETWORK_SUFFIX}"

    def hypernetwork_best(self, name: str | None = None) -> Path:
        return self.hypernetworks / f"{name or self.name}{BEST_SUFFIX}{HYPERNETWORK_SUFFIX}"

    def preview(self, step: int) -> Path:
        return self.images / f"{self.name}-{step}.png"

    def preview_grid(self, step: int) -> Path:
        return self.preview_grids / f"{self.name}-{step}.png"

    def image_embedding(self, step: int, name: str | None = None) -> Path:
        return self.image_embeddings / f"{name or self.name}-{step}.png"

    # -- reading --------------------------------------------------------------------------
    def snapshots(self, name: str | None = None) -> list[tuple[int, Path]]:
        """(step, file) of NAME-STEP.* in embeddings/, newest step first."""
        return _snapshots(self.embeddings, name or self.name, EMBEDDING_SUFFIXES)

    def hypernetwork_snapshots(self, name: str | None = None) -> list[tuple[int, Path]]:
        """(step, file) of NAME-STEP.pt in hypernetworks/, newest step first."""
        return _snapshots(self.hypernetworks, name or self.name, (HYPERNETWORK_SUFFIX,))

    def embedding_files(self) -> list[Path]:
        """Every saved embedding of the run (snapshots, best, init), newest first."""
        if not self.embeddings.is_dir():
            return []
        files = [p for p in self.embeddings.iterdir() if p.suffix in EMBEDDING_SUFFIXES and p.is_file()]
        return sorted(files, key=lambda p: p.stat().st_mtime, reverse=True)

    def previews(self) -> list[tuple[Path, int]]:
        """(image, step) of images/NAME-STEP.png, in step order."""
        out = []
        for path in self.images.glob("*.png") if self.images.is_dir() else ():
            tail = path.stem.rsplit("-", 1)[-1]
            if tail.isdigit():
                out.append((path, int(tail)))
        return sorted(out, key=lambda item: item[1])

    def prune_snapshots(self, keep: int) -> list[Path]:
        """--keep-last N: delete the snapshot files (embeddings/, image_embeddings/, hypernetworks/)
        of all but the N latest saved steps, so a long run's disk use stays bounded. Returns the
        deleted paths."""
        doomed = []
        for folder in (self.embeddings, self.image_embeddings, self.hypernetworks):  # each keeps its own N latest
            by_step: dict[int, list[Path]] = {}
            for path in folder.glob("*-*") if folder.is_dir() and keep > 0 else ():
                found = _SNAPSHOT_RE.match(path.name)
                if found and path.is_file():
                    by_step.setdefault(int(found.group(1)), []).append(path)
            doomed += [p for step in sorted(by_step)[:-keep] for p in by_step[step]]
        for path in doomed:
            path.unlink(missing_ok=True)
        return doomed


def _snapshots(folder: Path, name: str, suffixes: tuple[str, ...]) -> list[tuple[int, Path]]:
    found = []
    for path in folder.glob(f"{glob.escape(name)}-*") if folder.is_dir() else ():
        stem, _, rest = path.name[len(name) + 1:].partition(".")
        if stem.isdigit() and path.suffix in suffixes and path.is_file():
            found.append((int(stem), path))
    return sorted(found, key=lambda item: (-item[0], item[1].suffix != ".pt"))


def candidates(log_dir: str | Path, name: str):
    """LOG_DIR/NAME, then LOG_DIR/NAME-2, NAME-3 …: where a run of NAME may live."""
    k = 1
    while True:
        yield Path(log_dir) / (name if k == 1 else f"{name}-{k}")
        k += 1


def final_paths(output: str | None, embedding: str, formats: tuple[str, ...], name: str,
                partner: str | None = None) -> list[tuple[Path, str]]:
    """Where a finished embedding goes: --output (its extension picks the first format), else
    NAME.<ext> in the input embedding's folder; every other chosen format beside it. `partner` (a
    second embedding of the run, DreamArtist's NAME-neg) follows the positive's file name:
    --output out/cat.pt -> out/cat-neg.pt; a partner whose name does not extend NAME keeps its own."""
    target = Path(output) if output else Path(embedding)
    stem = target.stem if output else name
    if partner is not None:
        stem = stem + partner[len(name):] if partner.startswith(name) and partner != name else partner
    # Not with_suffix: a name such as "v1.5" would lose its ".5".
    return [(target.parent / f"{stem}{ext(fmt)}", fmt) for fmt in formats]


def embedding_finals(cfg: TrainConfig, names: Sequence[str]) -> list[list[tuple[Path, str]]]:
    """(file, format) of each finished file, per embedding of the run in its order (`names`: their
    stored names, the first naming the run). DreamArtist's negative follows the positive's file name
    (final_paths' partner); each further embedding of a Textual Inversion run (the [[embeddings]]
    tables) is NAME.<ext> beside its own file, or in --output's folder when there is one."""
    first = final_paths(cfg.output, cfg.trained_file, cfg.formats, names[0])
    if cfg.method != "ti":
        return [first] + [final_paths(cfg.output, cfg.trained_file, cfg.formats, names[0], n) for n in names[1:]]
    files = [t.path for t in cfg.embedding_tables]
    return [first] + [final_paths(None, cfg.output or file, cfg.formats, name)
                      for file, name in zip(files[1:], names[1:])]


def final_hypernetwork(output: str | None, hypernetwork: str) -> Path:
    """Where a finished hypernetwork goes: --output, else over the --hypernetwork file it started
    from (as A1111's trainer overwrites models/hypernetworks/NAME.pt); its .optim beside it."""
    return Path(output or hypernetwork)


def best_beside(final: Path, fmt: str) -> Path:
    """NAME-best.<ext> beside the finished file NAME.<ext> (of format `fmt`), where the user looks
    for their result."""
    suffix = ext(fmt)
    stem = final.name[:len(final.name) - len(suffix)] if suffix else final.name
    return final.with_name(f"{stem}{BEST_SUFFIX}{suffix}")
