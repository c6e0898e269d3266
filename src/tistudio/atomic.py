"""Crash-safe writes: every output goes to a temporary name in the same folder, is flushed to disk,
then renamed over the target, so a reader never sees a half-written file.

A process killed mid-write leaves only a hidden `.NAME.XXXX.tmp` beside the target (never a damaged
target); `remove_stale` clears those when the folder is next used. Disk-full and read-only folders
become a one-line TIStudioError, and the target keeps its previous content."""
from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from .errors import TIStudioError
from .memory import status_field

TMP_SUFFIX = ".tmp"
# errno -> the fix to suggest. Anything else is a bug or an odd file system: re-raised unchanged.
# Every command writes through here, so the fix names no command's flags: the target's path tells
# the user which of their options chose that folder.
_FIXES = {
    errno.ENOSPC: "the disk is full; free space and run again (a training run: `train --resume` continues it)",
    errno.EDQUOT: "the disk quota is used up; free space and run again (a training run: `train --resume` continues it)",
    errno.EROFS: "the file system is read-only; choose a folder on a writable disk",
    errno.EACCES: "no permission to write there; choose a folder you can write to",
    errno.EPERM: "no permission to write there; choose a folder you can write to",
}


def _umask() -> int:
    """The process umask, read without changing it (os.umask would race with other threads)."""
    value = status_field("Umask")
    if value is not None and set(value) <= set("01234567"):
        return int(value, 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _mode_for(target: Path) -> int:
    """mkstemp makes 0600 files; give the result the mode a plain open() would (or the old file's)."""
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        return 0o666 & ~_umask()


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (a power cut could otherwise undo it). POSIX only."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some file systems (network, FUSE) cannot sync a folder; the rename still holds
        pass
    finally:
        os.close(fd)


def as_user_error(exc: OSError, target: Path) -> TIStudioError | None:
    """A one-line error for environment failures (disk full, read-only), else None."""
    fix = _FIXES.get(exc.errno)
    if fix is None:
        return None
    reason = exc.strerror or os.strerror(exc.errno)
    return TIStudioError(f"cannot write {target}: {reason}; {fix}")


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it replaces `target`, on error it is removed
    and `target` is left as it was."""
    target = Path(target)
    tmp_path = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TMP_SUFFIX, dir=target.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        mode = _mode_for(target)
        yield tmp_path
        # After the writer, not before: some libraries (safetensors' save_file) replace the file at
        # tmp_path with their own 0600 temporary, which would otherwise become the target's mode.
        os.chmod(tmp_path, mode)
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, target)
        _fsync_dir(target.parent)
    except OSError as exc:
        user = as_user_error(exc, target)
        if user is None:
            raise
        raise user from None
    finally:
        if tmp_path is not None:
            tmp_path.unlink(missing_ok=True)


def write_with(target: str | Path, writer: Callable[[Path], object]) -> Path:
    """Run `writer(tmp_path)` and move the result into place atomically."""
    with atomic_path(target) as tmp:
        writer(tmp)
    return Path(target)


def write_bytes(target: str | Path, data: bytes) -> Path:
    return write_with(target, lambda p: p.write_bytes(data))


def write_text(target: str | Path, text: str) -> Path:
    return write_with(target, lambda p: p.write_text(text, encoding="utf-8"))


def is_temporary(path: Path) -> bool:
    """Whether `path` is one of our in-flight temporaries (`.NAME.XXXX.tmp`)."""
    return path.name.startswith(".") and path.name.endswith(TMP_SUFFIX) and path.name.count(".") >= 3


def remove_stale(folder: str | Path) -> list[Path]:
    """Delete temporaries a killed process left under `folder` (recursively); return them. Call only
    on a folder no other process is writing (a run folder being resumed)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.rglob(f".*{TMP_SUFFIX}") if p.is_file() and is_temporary(p)]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def check_writable(target: str | Path) -> None:
    """Fail now, not after hours of training, when `target` could not be written later: its nearest
    existing folder must take a new file (probed by creating and removing one, since permissions
    alone do not tell: root ignores them, a read-only mount does not). The probe is a temporary, so
    remove_stale clears it should the process die in between."""
    target = Path(target)
    folder = target.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise TIStudioError(f"cannot write {target}: {folder} is a file, not a folder; choose another path")
    probe = folder / f".tistudio-probe.{os.getpid()}{TMP_SUFFIX}"
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_WRONLY, 0o600))
        os.unlink(probe)
    except OSError as exc:
        user = as_user_error(exc, target)
        if user is None:
            raise
        raise user from None
