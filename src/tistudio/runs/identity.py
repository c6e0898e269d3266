"""Which run a folder belongs to. RUN/run.json records the embedding a run trains: its stored
name, its path and the sha256 of the file it started from, plus the hashes of the finished files
the run wrote (training them further continues the same run). A different embedding that happens
to have the same name gets its own folder NAME-2 (NAME-3 …) instead of mixing files with this one."""
from __future__ import annotations

import json
import time
import tomllib
from pathlib import Path

from ..atomic import write_text
from ..embedding.formats import load_embedding
from ..errors import TIStudioError
from ..hashing import file_sha256
from ..hypernetwork import format as hypernetwork_format
from .folder import CONFIG_FILE, RunFolder, candidates


def read(run: RunFolder) -> dict | None:
    try:
        data = json.loads(run.identity.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def belongs_to(run: RunFolder, embedding: Path, digest: str) -> bool:
    """Whether the folder is free or already this embedding's run: the file is one the run started
    from or wrote, or lies inside the folder (a snapshot trained further)."""
    if not run.is_run():
        return True
    embedding = embedding.resolve()
    if run.root.resolve() in embedding.parents:
        return True
    data = read(run)
    if data is None:  # a folder written before run.json existed: its config names the embedding
        return _configured_embedding(run) == embedding
    return digest in data.get("hashes", [])


def _configured_embedding(run: RunFolder) -> Path | None:
    try:
        value = tomllib.loads((run.root / CONFIG_FILE).read_text(encoding="utf-8")).get("embedding")
    except (OSError, ValueError):
        return None
    return Path(value).resolve() if isinstance(value, str) and value else None


def choose(log_dir: str | Path, name: str, embedding: str | Path) -> Path:
    """The folder a run of `embedding` (stored name `name`) writes: LOG_DIR/NAME when it is free
    or already this embedding's, else the first such LOG_DIR/NAME-K (K = 2, 3 …). Training and the
    web UI both ask this, so they agree on the folder."""
    embedding = Path(embedding)
    digest = file_sha256(embedding) if embedding.exists() else ""
    return next(root for root in candidates(log_dir, name) if belongs_to(RunFolder(root, name), embedding, digest))


def record(run: RunFolder, embedding: str | Path, written: list[Path] = ()) -> None:
    """Write run.json: a new run notes the embedding it starts from; a continued one keeps its
    record and adds the hashes of the files it just wrote."""
    embedding = Path(embedding)
    data = read(run) or {"name": run.name, "embedding": str(embedding.resolve()),
                         "sha256": file_sha256(embedding) if embedding.exists() else "",
                         "created": time.strftime("%Y-%m-%d %H:%M:%S"), "hashes": []}
    hashes = list(data.get("hashes", []))
    for digest in [data.get("sha256", "")] + [file_sha256(p) for p in written if Path(p).exists()]:
        if digest and digest not in hashes:
            hashes.append(digest)
    data["hashes"] = hashes
    write_text(run.identity, json.dumps(data, indent=2) + "\n")


def folder_for(log_dir: str | Path, trained: str | Path) -> RunFolder:
    """The run folder that training the file `trained` (an embedding or a hypernetwork) writes, as
    training chooses it, for a face that shows the run before it starts (the web UI). A file that
    cannot be read is named by its file name here; training then says what is wrong with it."""
    try:
        hypernetwork = hypernetwork_format.sniff(trained)
        name = hypernetwork.name if hypernetwork is not None else load_embedding(trained).name
    except (TIStudioError, OSError):
        name = Path(trained).stem
    return RunFolder(choose(log_dir, name, trained), name)
