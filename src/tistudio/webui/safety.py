"""What makes the web UI safe to leave running: it binds to loopback unless a password is set, every
path typed into a field must lie under the --root folder, and uploads must really be images (or
UTF-8 captions beside them)."""
from __future__ import annotations

import ipaddress
import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from ..atomic import write_bytes
from ..errors import TIStudioError, first_line

LOOPBACK_NAMES = ("localhost",)
UPLOAD_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")
MAX_UPLOAD_PIXELS = 50_000_000   # a 50 MP upload is already far beyond any training size
CAPTION_SUFFIX = ".txt"
MAX_SUFFIX_BYTES = 16             # ".jpeg", ".tiff": anything longer is part of the name
# Unicode categories replaced in upload names: controls, and format characters such as the
# right-to-left override, which can make "gpj.exe" display as "exe.jpg".
_HIDDEN_CATEGORIES = ("Cc", "Cf", "Zl", "Zp")


@dataclass(frozen=True)
class PathGuard:
    """Confines every user-typed path to `root`. Relative paths are taken from the root; symlinks are
    resolved first, so a link inside the root that points out of it is refused too. `trusted` holds
    paths the operator gave on the command line (e.g. --model), which may lie elsewhere."""

    root: Path
    trusted: frozenset[Path] = frozenset()

    @classmethod
    def at(cls, root: str | Path, trusted: tuple[str | Path, ...] = ()) -> "PathGuard":
        base = Path(root).expanduser().resolve()
        if not base.is_dir():
            raise TIStudioError(f"--root {root}: not a folder; create it or pass an existing folder")
        return cls(base, frozenset(Path(t).expanduser().resolve() for t in trusted if t))

    def inside(self, path: Path) -> bool:
        return path == self.root or self.root in path.parents

    def resolve(self, value: str | None, label: str, must_exist: str | None = None) -> Path:
        """The absolute path for field `label`; must_exist: None, "file", "dir" or "any"."""
        text = (value or "").strip()
        if not text:
            raise TIStudioError(f"{label}: empty; enter a path under {self.root}")
        path = Path(text).expanduser()
        real = (path if path.is_absolute() else self.root / path).resolve()
        if not self.inside(real) and real not in self.trusted:
            raise TIStudioError(f"{label} {text}: outside the web UI root {self.root}; use a path under it "
                                "(or restart with a wider --root)")
        checks = {"file": real.is_file, "dir": real.is_dir, "any": real.exists}
        if must_exist and not checks[must_exist]():
            what = {"file": "no such file", "dir": "no such folder", "any": "does not exist"}[must_exist]
            raise TIStudioError(f"{label} {text}: {what} under {self.root}")
        return real

    def optional(self, value: str | None, label: str, must_exist: str | None = None) -> Path | None:
        return self.resolve(value, label, must_exist) if (value or "").strip() else None

    def show(self, path: str | Path) -> str:
        """A path as the user typed it: relative to the root where possible."""
        path = Path(path)
        try:
            return str(path.relative_to(self.root)) or "."
        except ValueError:
            return str(path)


def check_image(path: Path, max_pixels: int = MAX_UPLOAD_PIXELS) -> str | None:
    """None if `path` is a readable image in an accepted format, else the reason it is not. The size is
    checked from the header before any pixel is decoded (decompression bombs)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            if img.format not in UPLOAD_FORMATS:
                return f"{img.format} images are not accepted; use {', '.join(UPLOAD_FORMATS)}"
            if img.width * img.height > max_pixels:
                return f"{img.width}x{img.height} is larger than {max_pixels} pixels"
            img.verify()
        with Image.open(path) as img:
            img.load()  # verify() skips the pixel data; a truncated file fails only here
    except (UnidentifiedImageError, Image.DecompressionBombError):
        return "not an image"
    except (OSError, SyntaxError, ValueError) as exc:
        return f"damaged image ({first_line(exc)})"
    return None


def safe_filename(name: str) -> str:
    """The base name of an uploaded file, never a path. Letters of every script stay, NFC-normalised
    (a Mac sends "é" as e + accent); path separators, characters Windows refuses and invisible
    controls become "_"; leading dots go (no hidden files, no ".."); the stem is cut to
    FILENAME_BYTES of UTF-8, keeping the extension, so the name fits every file system."""
    # Here, not at the top: the CLI imports this module to refuse a bad --host instantly, before
    # anything heavy (preprocess pulls in numpy and PIL).
    from ..preprocess.run import FILENAME_BYTES, UNSAFE_FILENAME

    base = unicodedata.normalize("NFC", name).replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join("_" if unicodedata.category(c) in _HIDDEN_CATEGORIES else c for c in base)
    base = UNSAFE_FILENAME.sub("_", base).strip().lstrip(".").strip()
    stem, suffix = os.path.splitext(base)
    if len(suffix.encode("utf-8")) > MAX_SUFFIX_BYTES:
        stem, suffix = base, ""
    stem = stem.encode("utf-8")[:FILENAME_BYTES].decode("utf-8", errors="ignore").strip()
    return f"{stem or 'upload'}{suffix}"


def check_caption(path: Path) -> str | None:
    """None if `path` is a caption training can read (UTF-8 text within the caption size limit),
    else the reason it is not."""
    from ..data.captions import CAPTION_LIMIT, read_caption  # not at the top: see safe_filename

    if path.stat().st_size > CAPTION_LIMIT:
        return f"larger than {CAPTION_LIMIT // 1024} KiB, too large for a caption"
    try:
        read_caption(path)
    except UnicodeDecodeError:
        return "not UTF-8 text; re-save it as UTF-8"
    except TIStudioError:
        return "cannot be read"
    return None


def store_uploads(files: list[str | Path], dest: Path) -> tuple[list[Path], list[str]]:
    """Copy the uploads that are images into `dest` (atomically), with the `.txt` captions named
    like one of them (an image of this upload or one already in `dest`); the others are listed as
    'name: reason' and never written."""
    stored, rejected = [], []
    files = [Path(f) for f in files]
    captions = [f for f in files if f.suffix.lower() == CAPTION_SUFFIX]
    for file in (f for f in files if f.suffix.lower() != CAPTION_SUFFIX):
        reason = check_image(file)
        if reason:
            rejected.append(f"{safe_filename(file.name)}: {reason}")
            continue
        stored.append(write_bytes(dest / safe_filename(file.name), file.read_bytes()))
    present = {p.stem for p in stored}
    if captions and dest.is_dir():
        present |= {p.stem for p in dest.iterdir() if p.suffix.lower() != CAPTION_SUFFIX}
    for file in captions:
        name = safe_filename(file.name)
        reason = check_caption(file) or (None if Path(name).stem in present else
                                         f"no image named {Path(name).stem} beside it; upload the image too")
        if reason:
            rejected.append(f"{name}: {reason}")
            continue
        stored.append(write_bytes(dest / name, file.read_bytes()))
    return stored, rejected


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, auth: list | None) -> None:
    """Anyone who can reach the page can read and write files under --root, so serving beyond this
    machine requires a password."""
    if not is_loopback(host) and not auth:
        raise TIStudioError(f"--host {host}: serving beyond this machine needs a password; add "
                            "--auth USER:PASS or --auth-file FILE, or keep the default --host 127.0.0.1")


def parse_auth(auth: str | None, auth_file: str | None) -> list[tuple[str, str]] | None:
    """--auth USER:PASS or --auth-file FILE (one USER:PASS per line, # comments) -> credentials."""
    if auth and auth_file:
        raise TIStudioError("--auth and --auth-file: give one of them, not both")
    if auth:
        return [_credential(auth, "--auth")]
    if not auth_file:
        return None
    try:
        lines = Path(auth_file).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise TIStudioError(f"--auth-file {auth_file}: cannot be read ({exc})") from None
    creds = [_credential(line.strip(), f"--auth-file {auth_file} line {i}")
             for i, line in enumerate(lines, 1) if line.strip() and not line.strip().startswith("#")]
    if not creds:
        raise TIStudioError(f"--auth-file {auth_file}: no USER:PASS lines in it")
    return creds


def _credential(text: str, where: str) -> tuple[str, str]:
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise TIStudioError(f"{where}: expected USER:PASS with both parts non-empty")
    return user, password
