"""What a file holds, as other programs' loaders see it (before any normalising): top-level keys in
the order their loader iterates them, which values are not tensors, raw tensor shapes (1-D or
2-D), the zip entries and pickle globals of a torch archive. `compat.py` judges these facts."""
from __future__ import annotations

import pickletools
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from ..models.family import FAMILIES
from .formats import a1111_png, a1111_pt, safetensors_fmt
from .formats.describe import guess_family
from .formats.diffusers_fmt import STEMS, pair
from .formats.dicts import parse
from .formats.registry import read_embedding, sniff

_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8", "SHORT_BINSTRING", "BINSTRING"}


@dataclass(frozen=True)
class FileFacts:
    path: Path
    container: str                       # pickle | safetensors | png | image | folder
    family: str | None                   # sd1 | sd2 | sdxl, from the widths; None when no real family fits
    widths: tuple[int, ...]
    n_vectors: int
    stored_name: str | None              # the dict's "name" (A1111 PNGs trigger on it; diffusers on it for .pt)
    keys: tuple[str, ...] = ()           # top-level keys, in the order the clients' loaders see them
    non_tensor_keys: tuple[str, ...] = ()
    first_shape: tuple[int, ...] | None = None   # shape of the first top-level value, when it is a tensor
    zip_entries: tuple[str, ...] | None = None   # torch archive entry names; None when not a zip
    pickle_globals: tuple[str, ...] = ()         # "module.name" of every global the pickle imports
    folder_files: tuple[str, ...] = ()           # a diffusers folder's learned_embeds* file names
    inner: "FileFacts | None" = None             # a folder's first file, judged as a file

    @property
    def stem(self) -> str:
        return self.path.stem if self.container != "folder" else self.path.name

    @property
    def suffix(self) -> str:
        return self.path.suffix.lower()


def family_of(widths: tuple[int, ...]) -> str | None:
    """sd1/sd2/sdxl by vector widths (the tiny test models count as their family)."""
    name = guess_family(widths).split(" ")[0]
    return name if name in FAMILIES else None


def _raw(path: Path, container: str) -> dict:
    """The top-level dict as the clients load it (safetensors' load_file returns keys sorted)."""
    if container == "safetensors":
        data, _ = safetensors_fmt.read(path)
        return dict(sorted(data.items()))
    if container in ("png", "image"):
        return a1111_png.read(path)[0]
    data = a1111_pt.read_pickle(path)
    return data if isinstance(data, dict) else {}


def _archive(path: Path) -> tuple[tuple[str, ...] | None, tuple[str, ...]]:
    """Entry names and pickle globals of a torch zip archive ((None, ()) for a pre-zip pickle)."""
    try:
        with zipfile.ZipFile(path) as z:
            names = tuple(z.namelist())
            pkl = next((n for n in names if n.endswith("/data.pkl")), None)
            return names, (_globals(z.read(pkl)) if pkl else ())
    except zipfile.BadZipFile:
        return None, ()


def _globals(pickle_bytes: bytes) -> tuple[str, ...]:
    """Every global a pickle imports, read from its opcodes (nothing is unpickled)."""
    found, strings = [], []
    for op, arg, _ in pickletools.genops(pickle_bytes):
        if op.name == "GLOBAL":
            found.append(".".join(str(arg).split(" ", 1)))
        elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
            found.append(f"{strings[-2]}.{strings[-1]}")
        elif op.name in _STRING_OPS:
            strings.append(arg if isinstance(arg, str) else arg.decode("latin-1"))
    return tuple(sorted(set(found)))


def _file_facts(path: Path) -> FileFacts:
    container = sniff(path)
    data = _raw(path, container)
    vectors = parse(data, str(path)).vectors
    widths = tuple(int(v.shape[1]) for v in vectors)
    first = next(iter(data.values()), None)
    entries, globals_ = _archive(path) if container == "pickle" else (None, ())
    name = data.get("name")
    return FileFacts(
        path=path, container=container, family=family_of(widths), widths=widths,
        n_vectors=int(vectors[0].shape[0]), stored_name=name if isinstance(name, str) else None,
        keys=tuple(map(str, data)), non_tensor_keys=tuple(str(k) for k, v in data.items()
                                                          if not isinstance(v, torch.Tensor)),
        first_shape=tuple(first.shape) if isinstance(first, torch.Tensor) else None,
        zip_entries=entries, pickle_globals=globals_)


def facts(path: str | Path) -> FileFacts:
    """Facts of a file or diffusers folder; unreadable input raises TIStudioError as readers do."""
    path = Path(path)
    loaded = read_embedding(path)  # the same checks and one-line errors as every other reader
    if not path.is_dir():
        return _file_facts(path)
    files = pair(path) or ()
    present = tuple(sorted(p.name for p in path.iterdir() if p.stem in STEMS))
    emb = loaded.embedding
    return FileFacts(path=path, container="folder", family=family_of(emb.widths), widths=emb.widths,
                     n_vectors=emb.n_vectors, stored_name=None, folder_files=present,
                     inner=_file_facts(files[0]))
