"""The preprocess driver: a SRC folder of images -> a DST folder of target-sized PNGs named
`{index:05}-{sub}-{stem}.png`, with `.txt` captions and `_att.png` loss-weight maps beside them.
SRC is only ever read; every output is written atomically; unusable files are listed, not fatal
(unless none is usable: then it is an error, as are captions that cannot be decoded)."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..atomic import as_user_error, write_text
from ..data.captions import read_caption, sidecar_path, undecodable_message
from ..errors import TIStudioError
from .caption import Captioner, join_caption, load_captioners, merge_existing
from .images import (BadImage, Picture, attach_weight_map, cover_resize, crop_box, is_oversized,
                     keep_size, load_picture, mirror, save_png, split_tiles)
from .options import PreprocessOptions

ATTENTION_SUFFIXES = ("_att", "_att_proc")  # maps that belong to an image; the trainer skips them too
FILENAME_BYTES = 150  # caption part of a file name; file systems allow 255 bytes in all
UNSAFE_FILENAME = re.compile(r'[\\/:*?"<>|\x00-\x1f]')
DEBUG_FOLDER = "focal_debug"  # a sub-folder, so the trainer never mistakes debug images for data


@dataclass(frozen=True)
class Skipped:
    path: Path
    reason: str


@dataclass(frozen=True)
class PreprocessReport:
    sources: int
    images: tuple[Path, ...]
    captions: int
    weight_maps: int
    skipped: tuple[Skipped, ...]

    def summary(self) -> str:
        lines = [f"{self.sources} source files -> {len(self.images)} images "
                 f"({self.captions} captions, {self.weight_maps} loss-weight maps)"]
        if self.skipped:
            lines.append(f"warning: skipped {len(self.skipped)} files:")
            lines += [f"  {s.path.name}: {s.reason}" for s in self.skipped]
        return "\n".join(lines)


def check_paths(src: str | Path, dst: str | Path) -> tuple[Path, Path]:
    src_path, dst_path = Path(src).resolve(), Path(dst).resolve()
    if not src_path.is_dir():
        raise TIStudioError(f"SRC {src}: not a folder; give the folder that holds your source images")
    if dst_path == src_path or src_path in dst_path.parents:
        raise TIStudioError(f"DST {dst}: is inside SRC {src}; choose a destination outside the source "
                            "folder (SRC is never modified)")
    if dst_path.exists() and not dst_path.is_dir():
        raise TIStudioError(f"DST {dst}: is a file; give a folder (it is created if missing)")
    return src_path, dst_path


def list_sources(src: Path) -> list[Path]:
    """Every visible file in SRC except captions and attention maps, in name order (so indices are
    stable between runs). Non-images stay in the list: they are reported as skipped."""
    return sorted(p for p in src.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() != ".txt"
                  and not p.stem.endswith(ATTENTION_SUFFIXES))


def caption_stem(caption: str, fallback: str) -> str:
    """A caption made safe as a file name (the guide's "use caption as filename")."""
    text = " ".join(UNSAFE_FILENAME.sub("", caption).split()).strip(" .")
    encoded = text.encode("utf-8")
    if len(encoded) > FILENAME_BYTES:
        text = encoded[:FILENAME_BYTES].decode("utf-8", errors="ignore")
        text = text.rsplit(",", 1)[0] if "," in text else text  # end on a whole tag
    if not text:
        return fallback
    # The trainer strips a leading `[-\d]+\s*` from names: a space keeps a caption's own leading
    # digits or dashes ("1girl") from being eaten with the index.
    return f" {text}" if text[0].isdigit() or text[0] == "-" else text


def plan_pieces(picture: Picture, options: PreprocessOptions, detector=None):
    """The output pictures for one source, before flipping; also the focal evidence (or None)."""
    if options.keep_size:
        return [keep_size(picture)], None, picture.size
    target = (options.width, options.height)
    if options.auto_size is not None:
        from .autosize import choose_size

        target = choose_size(picture.size, options.auto_size) or target
    if options.split and is_oversized(picture.size, target, options.split_threshold):
        return split_tiles(picture, target, options.split_overlap), None, target
    if options.focal is not None and crop_box(picture.size, target) != (0.0, 0.0, *map(float, picture.size)):
        from .focal import find_focus

        focus = find_focus(picture.rgb, target, options.focal, detector)
        return [cover_resize(picture, target, focus.point)], focus, target
    return [cover_resize(picture, target)], None, target


def read_existing(sources: list[Path], encoding: str) -> dict[Path, str]:
    """SRC's own captions by image, read before any work so that every file that is not `encoding`
    text is named in one error (never rewritten with U+FFFD)."""
    found, undecodable = {}, []
    for path in sources:
        sidecar = sidecar_path(path)
        if sidecar.is_file():
            try:
                found[path] = read_caption(sidecar, encoding)
            except UnicodeDecodeError:
                undecodable.append(sidecar)
    if undecodable:
        raise TIStudioError(undecodable_message(
            undecodable, encoding, "pass --caption-encoding ENC (e.g. cp1252), the encoding they were written in"))
    return found


def _writable(dst: Path) -> None:
    """Refuse a DST that cannot be written before any captioner loads or image is read."""
    existing = next(p for p in (dst, *dst.parents) if p.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        raise TIStudioError(f"DST {dst}: no permission to write in {existing}; choose a folder you can write to")


def _make_dst(dst: Path) -> None:
    try:
        dst.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise as_user_error(exc, dst) or TIStudioError(
            f"DST {dst}: cannot create it ({exc.strerror or exc}); choose another folder") from None


def _load(path: Path, options: PreprocessOptions) -> Picture:
    picture = load_picture(path, options.max_pixels, options.alpha, options.background)
    att = path.with_name(f"{path.stem}_att.png")
    if att.is_file():
        try:
            picture = attach_weight_map(picture, att)
        except OSError as exc:
            raise BadImage(f"its attention map {att.name} is unreadable ({exc})") from None
    return picture


def preprocess(src: str | Path, dst: str | Path, options: PreprocessOptions = PreprocessOptions(),
               progress: bool = True, detector=None) -> PreprocessReport:
    """Run the whole folder. `detector` replaces the bundled face detector (tests, other models)."""
    from tqdm import tqdm

    src_path, dst_path = check_paths(src, dst)
    sources = list_sources(src_path)
    _writable(dst_path)
    existing = read_existing(sources, options.caption.encoding) if options.caption.existing != "ignore" else {}
    captioners: list[Captioner] = load_captioners(options.caption)
    if not sources:
        raise TIStudioError(f"SRC {src}: holds no images to preprocess; put PNG/JPEG/WebP images in it")
    if options.focal is not None and options.focal.face_weight > 0 and detector is None:
        from .focal import HaarFaceDetector

        detector = HaarFaceDetector()
    _make_dst(dst_path)
    images, skipped = [], []
    captions = weight_maps = 0
    for index, path in enumerate(tqdm(sources, desc="preprocess", unit="image", disable=not progress)):
        try:
            picture = _load(path, options)
        except BadImage as exc:
            skipped.append(Skipped(path, str(exc)))
            continue
        pieces, focus, target = plan_pieces(picture, options, detector)
        if focus is not None and options.focal.debug:
            from .focal import debug_image

            save_png(debug_image(picture.rgb, focus, target), dst_path / DEBUG_FOLDER / f"{index:05}-{path.stem}.png")
        sub = 0
        for piece in pieces:
            caption = merge_existing(join_caption(*(c(piece.rgb) for c in captioners)), existing.get(path),
                                     options.caption.existing)
            name = caption_stem(caption, path.stem) if options.caption.in_filename else path.stem
            for variant in [piece, mirror(piece)] if options.flip else [piece]:
                base = dst_path / f"{index:05}-{sub}-{name}"
                images.append(save_png(variant.rgb, base.with_name(base.name + ".png")))
                if variant.weight is not None:
                    save_png(variant.weight, base.with_name(base.name + "_att.png"))
                    weight_maps += 1
                if caption and not options.caption.in_filename:
                    write_text(base.with_name(base.name + ".txt"), caption)
                    captions += 1
                sub += 1
    if not images:  # nothing to train on: an error, not a success with an empty folder
        first = skipped[0]
        raise TIStudioError(f"SRC {src}: no usable image among {len(sources)} files (e.g. {first.path.name}: "
                            f"{first.reason}); put PNG/JPEG/WebP images in it")
    return PreprocessReport(len(sources), tuple(images), captions, weight_maps, tuple(skipped))
