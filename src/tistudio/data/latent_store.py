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

A build fills new arrays (under a fresh ID; unchanged images' slots copied from the old ones) as the
cache asks for latents: all at once, or each the first time a step needs it (data/latent_encode.py
LatentFill). The index marks each slot filled or not and is rewritten after the first encode, at most
every SAVE_SECONDS after that, and when the last slot is in: the filled slots are flushed to disk
first, then the index is replaced atomically, then arrays no index names are deleted. Later encodes
only write slots the index marks unfilled, so a kill at any point leaves a valid index (or none), and
the next run or resume reuses every slot it marks filled.

Encoding and the `once` draw are data/latent_encode.py's, shared with the in-memory cache: each
image's sample has its own generator, so a re-encoded image gets the sample a full rebuild (or the
in-memory cache) would give it.
"""
from __future__ import annotations

import hashlib
import json
import secrets
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..atomic import remove_stale, write_text
from ..errors import TIStudioError
from ..events import Callback
from ..hashing import file_sha256
from .dataset import ImageRecord
from .latent_encode import CachingProgress, EncodeFn, LatentFill

# `auto`: latents of this many bytes or more go to disk (BucketedCache.latent_bytes counts them):
# about 1,000 SD 1.x images at 512x512, 250 SDXL ones at 1024x1024 (mirrors and variants included).
AUTO_DISK_BYTES = 64 * 2**20
_VERSION = 2   # 2: `once` samples keyed per image by rng.py (1 drew them differently)
# A fill being encoded as the steps need it rewrites its index at most this often (and when complete).
SAVE_SECONDS = 30.0


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
        # An index write a kill interrupted; once per store, since a run's bucket builds write theirs
        # side by side.
        remove_stale(self.folder)
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

    def open(self, records: Sequence[ImageRecord], encode: EncodeFn, *, width: int, height: int, mode: str,
             flip: bool, batch_size: int, seed: int, progress: bool, callback: Callback | None,
             check: Callable) -> LatentFill:
        """The latents of `records` (LatentCache.build): an unchanged store's arrays as they are, or a
        fill whose reused slots are copied from the previous build and whose other images are encoded
        when the fill asks (all now, or as the steps need them) into new arrays, which, with the index
        that names them, replace the old ones once the last image is in."""
        # Only `once` values depend on the seed; the other modes' stores are shared across seeds.
        key = self._key(width, height, mode, flip, seed if mode == "once" else 0)
        self.folder.mkdir(parents=True, exist_ok=True)
        old = self._index(key)
        _remove_unnamed(self.folder, key, old["arrays"] if old else ())
        job = _Build(self, key, records, encode, width, height, mode, flip, batch_size, seed)
        fill = job.open(old, progress, callback, check)
        self.reused, self.encoded = job.reused, job.encoded
        return fill


class _Build:
    """One build of a store: which slots are reused, the new arrays the rest are encoded into, and
    the index written when they are complete."""

    def __init__(self, store: LatentStore, key, records, encode, width, height, mode, flip, batch_size, seed):
        self.store, self.key, self.records, self.encode = store, key, records, encode
        self.options = dict(width=width, height=height, mode=mode, flip=flip, seed=seed, batch_size=batch_size)
        self.views = 2 if flip else 1
        self.with_std = mode == "random"
        self.entries: list[dict] = []
        self.reused = self.encoded = 0
        self.maps: list[np.memmap] = []
        self.saved = 0.0  # when the index last recorded the filled slots (time.monotonic)

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
            same = e is not None and e.get("filled", True) and ((e["size"], e["mtime_ns"]) == (size, mtime) or (
                e["size"] == size and e["sha256"] and e["sha256"] == file_sha256(r.path)))  # touched, not changed
            if same:
                entry["sha256"] = e["sha256"]
            self.entries.append(entry)
            sources.append(i if same else None)
        return sources

    def open(self, old: dict | None, progress: bool, callback: Callback | None, check: Callable) -> LatentFill:
        folder = self.store.folder
        sources = self._match(old)
        if old is not None and sources == list(range(len(old["entries"]))):  # nothing changed at all
            check(self.records, tuple(old["shape"][-2:]))
            self.reused = len(sources)
            arrays = [torch.from_numpy(_memmap(folder / n, tuple(old["shape"]), "c")) for n in old["arrays"]]
            return LatentFill.filled(self.records, arrays[0], arrays[1] if self.with_std else None)
        have = [i for i, s in enumerate(sources) if s is not None]
        self.reused, self.encoded = len(have), len(self.records) - len(have)
        ident = secrets.token_hex(4)
        self.names = [f"latents-{self.key}-{ident}.f32", f"latents-{self.key}-{ident}.std.f32"][:2 if self.with_std else 1]
        bar = CachingProgress(len(self.records) * self.views, progress, callback)
        fill = LatentFill(self.records, self.encode, bar=bar, check=check, arrays=self._arrays, have=have,
                          chunk=self._filled, **self.options)
        if have:  # the old build's shape: copy the unchanged images' latents over now
            shape = (len(self.records), *old["shape"][1:])
            check(self.records, shape[-2:])
            fill.values, fill.std = self._arrays(shape, self.with_std)
            olds = [_memmap(folder / n, tuple(old["shape"]), "r") for n in old["arrays"]]
            for i in have:
                for out, src in zip((fill.values, fill.std), olds):
                    out[i] = torch.from_numpy(np.array(src[sources[i]]))
            bar.update(self.reused * self.views)  # reused, not encoded
        for i, entry in enumerate(self.entries):  # until encoded (an interrupted fill's index names them)
            entry["filled"] = i in fill.have
        if not fill.pending:  # every image reused (some were dropped): only the index changes
            bar.close()
            fill.encode = None
            self._save()
        return fill

    def _arrays(self, shape: tuple[int, ...], with_std: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The new arrays, memory-mapped under their own fresh names: no index names them until _save."""
        self.shape = shape
        self.maps = [_memmap(self.store.folder / n, shape, "w+") for n in self.names]
        outs = [torch.from_numpy(m) for m in self.maps]
        return outs[0], (outs[1] if with_std else None)

    def _filled(self, rows: Sequence[int], last: bool) -> None:
        """Rows were encoded: the index records them when the fill is complete, and on the way at most
        every SAVE_SECONDS (a run stopped or killed in its first epoch then keeps most of its encodes)."""
        for i in rows:
            self.entries[i]["sha256"] = file_sha256(self.records[i].path)
            self.entries[i]["filled"] = True
        if last or time.monotonic() - self.saved >= SAVE_SECONDS:
            self._save()

    def _save(self) -> None:
        """The filled slots to disk, then the index naming them, then the previous build's arrays go. A
        kill at any point leaves a valid index (the old one or this) whose filled slots are on disk;
        later encodes only write slots it marks unfilled."""
        for m in self.maps:
            m.flush()
        folder = self.store.folder
        index = {"version": _VERSION, "shape": list(self.shape), "arrays": self.names, "entries": self.entries}
        write_text(folder / f"latents-{self.key}.json", json.dumps(index))
        _remove_unnamed(folder, self.key, self.names)
        self.saved = time.monotonic()


def _remove_unnamed(folder: Path, key: str, names: Sequence[str]) -> None:
    """This setting's arrays that its index does not name: a previous build's, or those of a build
    killed before it first wrote its index."""
    for path in folder.glob(f"latents-{key}-*.f32"):
        if path.name not in names:
            path.unlink(missing_ok=True)


def store_for(setting: str, nbytes: int, folder: Path, vae: torch.nn.Module) -> LatentStore | None:
    """The store `--latent-cache` asks for (auto: disk from AUTO_DISK_BYTES of latents, `nbytes`
    being what the cache will hold), or None for RAM."""
    if setting == "memory" or (setting == "auto" and nbytes < AUTO_DISK_BYTES):
        return None
    return LatentStore(folder, vae_fingerprint(vae))

