"""Latents on disk, memory-mapped: for datasets too large to cache in RAM (thousands of images), and
reused by later runs and resumes so the VAE never re-encodes an unchanged image.

A store is a folder (RUN/latents). For one setting (VAE, size, flip, sampling mode, and for `once`
the drawn seed) it holds `latents-KEY.json`, the index, and the float32 arrays it names
(`latents-KEY-ID.f32`, plus `-ID.std.f32` for `random` mode), shaped [N, views, C, h, w]. The index
lists every slot's image (path, greyscale flag, augmentation variant when it has one, size, mtime,
SHA-256). Aspect-ratio buckets need no more: each bucket's size gives it its own KEY. On a new build a slot is reused
only when its image is unchanged: same size and mtime, or, when those moved, the same SHA-256 (a copy
or `touch` keeps its latents). Anything else is encoded again. A different VAE (weights fingerprint)
gives a different KEY, so its latents are never mixed with another's.

Writes are crash-safe: arrays first (atomically, under a fresh ID), then the index that names them,
then the old arrays are deleted; a kill at any point leaves a valid index or none.

Encoding and the `once` draw are data/latent_encode.py's, shared with the in-memory cache: each
image's sample has its own generator, so a re-encoded image gets the sample a full rebuild (or the
in-memory cache) would give it.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import secrets
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..atomic import atomic_path, write_text, write_with
from ..errors import TIStudioError
from ..events import Callback
from ..hashing import file_sha256
from .dataset import ImageRecord
from .latent_encode import CachingProgress, EncodeFn, encode_all

# `auto`: latents of this many bytes or more go to disk (BucketedCache.latent_bytes counts them):
# about 1,000 SD 1.x images at 512x512, 250 SDXL ones at 1024x1024 (mirrors and variants included).
AUTO_DISK_BYTES = 64 * 2**20
_VERSION = 2   # 2: `once` samples keyed per image by rng.py (1 drew them differently)


def vae_fingerprint(vae: torch.nn.Module) -> str:
    """A cheap identity of the VAE's weights: every tensor's name, shape, dtype and a strided sample
    of its values (a different or fine-tuned VAE differs almost everywhere)."""
    h = hashlib.sha256()
    for name, t in sorted(vae.state_dict().items()):
        flat = t.detach().reshape(-1)
        stride = max(1, flat.numel() // 4096)
        h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
        h.update(flat[::stride].float().cpu().numpy().tobytes())
    return h.hexdigest()[:20]


def _stat(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise TIStudioError(f"image {path} disappeared while caching latents; restore it or remove it "
                            "from the dataset, then start again") from None
    return st.st_size, st.st_mtime_ns


def _memmap(path: Path, shape: tuple[int, ...], mode: str) -> np.memmap:
    return np.memmap(path, dtype=np.float32, mode=mode, shape=shape)


class LatentStore:
    def __init__(self, folder: str | Path, vae_key: str):
        self.folder = Path(folder)
        self.vae_key = vae_key
        self.reused = 0      # slots taken from the previous build (for tests and messages)
        self.encoded = 0

    def _key(self, width: int, height: int, mode: str, flip: bool, seed: int) -> str:
        text = json.dumps([_VERSION, self.vae_key, width, height, mode, flip, seed])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def _index(self, key: str) -> dict | None:
        path = self.folder / f"latents-{key}.json"
        try:
            index = json.loads(path.read_text(encoding="utf-8"))
            arrays = [self.folder / n for n in index["arrays"]]
            shape = tuple(index["shape"])
            ok = all(a.is_file() and a.stat().st_size == 4 * int(np.prod(shape)) for a in arrays)
            return index if ok and len(index["entries"]) == shape[0] else None
        except (OSError, ValueError, KeyError, TypeError):
            return None  # no store yet, or one we cannot trust: encode afresh

    def load_or_encode(self, records: Sequence[ImageRecord], encode: EncodeFn, *, width: int, height: int,
                       mode: str, flip: bool, batch_size: int, seed: int, progress: bool,
                       callback: Callback | None, check: Callable) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(values, std) as tensors over memory-mapped files; see LatentCache.build."""
        # Only `once` values depend on the seed; the other modes' stores are shared across seeds.
        key = self._key(width, height, mode, flip, seed if mode == "once" else 0)
        self.folder.mkdir(parents=True, exist_ok=True)
        job = _Build(self, key, records, encode, width, height, mode, flip, batch_size, seed)
        names, shape = job.run(self._index(key), progress, callback, check)
        self.reused, self.encoded = job.reused, job.encoded
        index = {"version": _VERSION, "shape": list(shape), "arrays": names, "entries": job.entries}
        write_text(self.folder / f"latents-{key}.json", json.dumps(index))
        for path in self.folder.glob(f"latents-{key}-*.f32"):  # the previous build's arrays
            if path.name not in names:
                path.unlink(missing_ok=True)
        arrays = [torch.from_numpy(_memmap(self.folder / n, tuple(shape), "c")) for n in names]
        return arrays[0], (arrays[1] if mode == "random" else None)


class _Build:
    """One build of a store: which slots are reused, encoding the rest, writing the arrays."""

    def __init__(self, store: LatentStore, key, records, encode, width, height, mode, flip, batch_size, seed):
        self.store, self.key, self.records, self.encode = store, key, records, encode
        self.width, self.height, self.mode, self.flip, self.batch_size, self.seed = \
            width, height, mode, flip, batch_size, seed
        self.views = 2 if flip else 1
        self.entries: list[dict] = []
        self.reused = self.encoded = 0

    def _match(self, old: dict | None) -> list[int | None]:
        """For each record, the old slot holding its unchanged latents, or None (and fill entries)."""
        slots = {(e["path"], e["grayscale"], e.get("augment", "")): (i, e)
                 for i, e in enumerate(old["entries"])} if old else {}
        sources = []
        for r in self.records:
            size, mtime = _stat(r.path)
            entry = {"path": str(r.path), "grayscale": r.grayscale, "size": size, "mtime_ns": mtime, "sha256": ""}
            if r.augment.key:  # a crop/colour variant (data/augment.py); plain entries are as before
                entry["augment"] = r.augment.key
            i, e = slots.get((entry["path"], entry["grayscale"], r.augment.key), (None, None))
            same = e is not None and ((e["size"], e["mtime_ns"]) == (size, mtime) or (
                e["size"] == size and e["sha256"] and e["sha256"] == file_sha256(r.path)))  # touched, not changed
            if same:
                entry["sha256"] = e["sha256"]
            self.entries.append(entry)
            sources.append(i if same else None)
        return sources

    def run(self, old: dict | None, progress: bool, callback: Callback | None,
            check: Callable) -> tuple[list[str], tuple[int, ...]]:
        self.entries = []
        sources = self._match(old)
        todo = [i for i, s in enumerate(sources) if s is None]
        if old is not None and sources == list(range(len(old["entries"]))):  # nothing changed at all
            check(self.records, tuple(old["shape"][-2:]))
            self.reused = len(sources)
            return list(old["arrays"]), tuple(old["shape"])
        bar = CachingProgress(len(self.records) * self.views, progress, callback)
        chunks = encode_all(self.records, todo, self.encode, width=self.width, height=self.height,
                            mode=self.mode, flip=self.flip, seed=self.seed, batch_size=self.batch_size, bar=bar)
        first = next(chunks, None)
        if first is not None:  # the first encoded chunk tells the latent shape (and checks weight maps early)
            check(self.records, first[1].shape[-2:])
            shape = (len(self.records), *first[1].shape[1:])
            if old is not None and tuple(old["shape"][1:]) != shape[1:]:
                bar.close()
                return self.run(None, progress, callback, check)  # cannot happen with one VAE; be safe anyway
        else:
            shape = (len(self.records), *old["shape"][1:])
            check(self.records, tuple(shape[-2:]))
        self.reused, self.encoded = len(self.records) - len(todo), len(todo)
        n_arrays = 2 if self.mode == "random" else 1
        old_arrays = [_memmap(self.store.folder / n, tuple(old["shape"]), "r") for n in old["arrays"]] if old else []
        ident = secrets.token_hex(4)
        names = [f"latents-{self.key}-{ident}.f32", f"latents-{self.key}-{ident}.std.f32"][:n_arrays]

        def fill(tmp_paths: list[Path]) -> None:
            outs = [_memmap(p, shape, "w+") for p in tmp_paths]
            for i, s in enumerate(sources):  # unchanged images: copy their latents over
                if s is not None:
                    for out, src in zip(outs, old_arrays):
                        out[i] = src[s]
            bar.update(self.reused * self.views)  # reused, not encoded
            for chunk, values, std in itertools.chain([first] if first is not None else [], chunks):
                for j, i in enumerate(chunk):
                    self.entries[i]["sha256"] = file_sha256(self.records[i].path)
                    for out, v in zip(outs, (values, std)):
                        out[i] = v[j].numpy()
            for out in outs:
                out.flush()

        with bar:
            self._write_arrays(names, fill)
        return names, shape

    def _write_arrays(self, names: list[str], fill: Callable[[list[Path]], None]) -> None:
        """Fill every array under a temporary name, then move each into place atomically."""
        folder = self.store.folder
        if len(names) == 1:
            write_with(folder / names[0], lambda tmp: fill([tmp]))
            return
        with atomic_path(folder / names[0]) as a, atomic_path(folder / names[1]) as b:
            fill([a, b])


def store_for(setting: str, nbytes: int, folder: Path, vae: torch.nn.Module) -> LatentStore | None:
    """The store `--latent-cache` asks for (auto: disk from AUTO_DISK_BYTES of latents, `nbytes`
    being what the cache will hold), or None for RAM."""
    if setting == "memory" or (setting == "auto" and nbytes < AUTO_DISK_BYTES):
        return None
    return LatentStore(folder, vae_fingerprint(vae))

