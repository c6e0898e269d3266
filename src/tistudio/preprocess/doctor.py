"""The dataset doctor (`tistudio check DATASET`): what in a training folder will hurt an embedding,
as findings (error | warning | info). Only an error makes a dataset unusable; warnings carry the
guide's advice (30+ images for a character, one consistent style, captions without the name).

Near duplicates use a DCT perceptual hash (32x32 grey, top-left 8x8 coefficients against their
median, 64 bits); a flipped copy is an image whose hash is near another's mirrored hash.
"""
from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..data.buckets import placements_for
from ..data.captions import CONVERT_FIX, name_in_text, read_caption, sidecar_path
from ..errors import TIStudioError
from ..hashing import file_sha256
from .images import BadImage, load_picture
from .options import DEFAULT_MAX_PIXELS
from .run import ATTENTION_SUFFIXES

HASH_SIDE = 32
RECOMMENDED_IMAGES = 30  # the guide: "prepare 30 or more images of the target persona"
LISTED = 8  # file names shown per finding in the table (JSON lists them all)


@dataclass(frozen=True)
class Finding:
    level: str  # "error" | "warning" | "info"
    code: str
    message: str
    files: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImageFacts:
    name: str
    width: int
    height: int
    sha256: str
    phash: int
    phash_mirrored: int
    grey: bool
    alpha: bool
    caption: str | None
    caption_undecodable: bool = False   # the .txt is not UTF-8: train refuses it


@dataclass(frozen=True)
class DatasetReport:
    path: str
    images: int
    captioned: int
    stats: dict
    findings: tuple[Finding, ...] = field(default_factory=tuple)
    trained_at: dict = field(default_factory=dict)   # image name -> "WxH" it trains at (buckets or the fixed size)

    @property
    def usable(self) -> bool:
        return not any(f.level == "error" for f in self.findings)

    def to_json(self) -> str:
        data = asdict(self)
        data["usable"] = self.usable
        return json.dumps(data, indent=2)

    def table(self) -> str:
        lines = [f"dataset {self.path}: {self.images} images, {self.captioned} with captions"]
        s = self.stats
        if self.images:
            lines.append(f"  size    min {s['min_size']}  median {s['median_size']}  max {s['max_size']}")
            lines.append(f"  aspect  {s['aspect_min']:.2f} .. {s['aspect_max']:.2f} (w/h, median "
                         f"{s['aspect_median']:.2f}): {s['portrait']} portrait, {s['square']} square, "
                         f"{s['landscape']} landscape")
        by_size: dict[str, list[str]] = {}
        for image, size in self.trained_at.items():
            by_size.setdefault(size, []).append(image)
        for size, images in sorted(by_size.items(), key=lambda kv: -len(kv[1])):
            lines.append(f"  trains at {size} ({len(images)}): {', '.join(images)}")
        lines.append(f"{'LEVEL':<8} {'CHECK':<22} FINDING")
        for f in self.findings:
            lines.append(f"{f.level:<8} {f.code:<22} {f.message}")
            if f.files:
                more = f" (+{len(f.files) - LISTED} more)" if len(f.files) > LISTED else ""
                lines.append(f"{'':<31} {', '.join(f.files[:LISTED])}{more}")
        warnings = sum(f.level == "warning" for f in self.findings)
        lines.append(f"result: {'usable' if self.usable else 'UNUSABLE'}, {warnings} warnings")
        return "\n".join(lines)


def _dct_matrix(n: int) -> np.ndarray:
    k, i = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    return np.cos(np.pi * (2 * i + 1) * k / (2 * n))


def perceptual_hash(grey: np.ndarray, dct: np.ndarray) -> int:
    coeffs = (dct @ grey @ dct.T)[:8, :8].ravel()
    bits = coeffs > np.median(coeffs[1:])  # the DC term only measures brightness
    return int("".join("1" if b else "0" for b in bits), 2)


def _facts(path: Path, dct: np.ndarray, max_pixels: int) -> ImageFacts:
    picture = load_picture(path, max_pixels, alpha="weight")
    small = picture.rgb.resize((HASH_SIDE, HASH_SIDE), Image.Resampling.BILINEAR)
    grey = np.asarray(small.convert("L"), np.float64)
    rgb = np.asarray(small, np.int16)
    sidecar = sidecar_path(path)
    caption, undecodable = None, False
    if sidecar.is_file():
        try:
            caption = read_caption(sidecar)
        except UnicodeDecodeError:
            undecodable = True
    return ImageFacts(
        name=path.name, width=picture.size[0], height=picture.size[1],
        sha256=file_sha256(path),
        phash=perceptual_hash(grey, dct), phash_mirrored=perceptual_hash(grey[:, ::-1], dct),
        grey=float(np.abs(rgb - rgb.mean(axis=2, keepdims=True)).mean()) < 2.0,
        alpha=picture.weight is not None,
        caption=caption, caption_undecodable=undecodable,
    )


def _distances(a: list[int], b: list[int]) -> np.ndarray:
    x = np.array(a, dtype=np.uint64)[:, None] ^ np.array(b, dtype=np.uint64)[None, :]
    bits = np.unpackbits(np.ascontiguousarray(x).view(np.uint8).reshape(len(a), len(b), 8), axis=-1)
    return bits.sum(axis=-1)  # popcount, also on numpy 1.x


def _similar_pairs(facts: list[ImageFacts], near: int) -> tuple[list, list, list]:
    """(exact, near, flipped) pairs of file names; each pair appears in one list only."""
    exact, similar, flipped = [], [], []
    plain = _distances([f.phash for f in facts], [f.phash for f in facts])
    mirrored = _distances([f.phash for f in facts], [f.phash_mirrored for f in facts])
    for i in range(len(facts)):
        for j in range(i + 1, len(facts)):
            pair = f"{facts[i].name} = {facts[j].name}"
            if facts[i].sha256 == facts[j].sha256:
                exact.append(pair)
            elif plain[i, j] <= near:
                similar.append(pair.replace(" = ", " ~ "))
            elif mirrored[i, j] <= near:
                flipped.append(pair.replace(" = ", " <> "))
    return exact, similar, flipped


def _stats(facts: list[ImageFacts]) -> dict:
    if not facts:
        return {}
    aspects = [f.width / f.height for f in facts]
    areas = sorted(facts, key=lambda f: f.width * f.height)
    size = lambda f: f"{f.width}x{f.height}"  # noqa: E731
    return {
        "min_size": size(areas[0]), "median_size": size(areas[len(areas) // 2]), "max_size": size(areas[-1]),
        "aspect_min": min(aspects), "aspect_max": max(aspects), "aspect_median": statistics.median(aspects),
        "portrait": sum(a < 0.95 for a in aspects), "square": sum(0.95 <= a <= 1.05 for a in aspects),
        "landscape": sum(a > 1.05 for a in aspects),
    }


def _file_findings(files: list[Path], image_stems: set[str], bad: list[tuple[str, str]]) -> list[Finding]:
    out = []
    if bad:
        out.append(Finding("warning", "unreadable", f"{len(bad)} files are not usable images and are skipped",
                           tuple(f"{n} ({why})" for n, why in bad)))
    orphans = [p.name for p in files if p.suffix.lower() == ".txt" and p.stem not in image_stems]
    if orphans:
        out.append(Finding("warning", "orphan-captions", f"{len(orphans)} .txt files match no image",
                           tuple(orphans)))
    att = [p.name for p in files if p.stem.endswith(ATTENTION_SUFFIXES)
           and p.stem.rsplit("_att", 1)[0] not in image_stems]
    if att:
        out.append(Finding("warning", "orphan-attention-maps", f"{len(att)} attention maps match no image",
                           tuple(att)))
    return out


def _caption_findings(facts: list[ImageFacts], name: str | None) -> list[Finding]:
    out = []
    undecodable = [f.name for f in facts if f.caption_undecodable]
    if undecodable:
        out.append(Finding("error", "caption-encoding", f"{len(undecodable)} caption files are not UTF-8 text "
                           f"and train refuses them; re-save them as UTF-8, or {CONVERT_FIX}",
                           tuple(str(Path(n).with_suffix(".txt")) for n in undecodable)))
    missing = [f.name for f in facts if f.caption is None and not f.caption_undecodable]
    if missing:
        out.append(Finding("warning", "uncaptioned", f"{len(missing)} images have no .txt caption; "
                           "[filewords] falls back to their file names", tuple(missing)))
    empty = [f.name for f in facts if f.caption is not None and not f.caption.strip()]
    if empty:
        out.append(Finding("warning", "empty-captions", f"{len(empty)} caption files are empty", tuple(empty)))
    if name:
        named = [f.name for f in facts if f.caption and name_in_text(name, f.caption)]
        if named:
            out.append(Finding("warning", "name-in-caption", f"{len(named)} captions contain the embedding "
                               f"name '{name}'; the template adds [name], remove it from captions", tuple(named)))
    return out


def _image_findings(facts: list[ImageFacts], size: tuple[int, int], subject: str, near: int,
                    bucketed: bool = False) -> list[Finding]:
    out = []
    if len(facts) < RECOMMENDED_IMAGES:
        out.append(Finding("warning", "few-images", f"{len(facts)} images; the guide recommends "
                           f"{RECOMMENDED_IMAGES} or more for a {subject}"))
    small = [f.name for f in facts if f.width < size[0] or f.height < size[1]]
    if small:
        out.append(Finding("warning", "smaller-than-training", f"{len(small)} images are smaller than "
                           f"{size[0]}x{size[1]} and will be upscaled (blurry)", tuple(small)))
    target = size[0] / size[1]
    off = [f.name for f in facts if abs((f.width / f.height) / target - 1) > 0.1]
    if off and bucketed:
        out.append(Finding("info", "aspect-differs", f"{len(off)} images differ from the {size[0]}x{size[1]} "
                           "aspect; train keeps their shape in aspect-ratio buckets (see 'trains at')", tuple(off)))
    elif off:
        out.append(Finding("info", "aspect-differs", f"{len(off)} images differ from the {size[0]}x{size[1]} "
                           "aspect; preprocess crops them (try --focal-crop or --auto-size)", tuple(off)))
    exact, similar, flipped = _similar_pairs(facts, near)
    for code, pairs, text in (("exact-duplicates", exact, "identical files"),
                              ("near-duplicates", similar, "near-identical images (perceptual hash)"),
                              ("flipped-copies", flipped, "mirrored copies beside originals (fine if made "
                               "on purpose, e.g. preprocess --flip; then leave the trainer's flip off)")):
        if pairs:
            out.append(Finding("warning", code, f"{len(pairs)} pairs of {text}", tuple(pairs)))
    greys = [f.name for f in facts if f.grey]
    if greys and len(greys) < len(facts):
        out.append(Finding("warning", "mixed-styles", f"{len(greys)} greyscale/monochrome and "
                           f"{len(facts) - len(greys)} colour images; the guide asks for one consistent style",
                           tuple(greys)))
    alpha = [f.name for f in facts if f.alpha]
    if alpha:
        out.append(Finding("info", "transparency", f"{len(alpha)} images have transparency; preprocess "
                           "turns it into _att.png loss weights", tuple(alpha)))
    return out


def check_dataset(path: str | Path, width: int = 512, height: int = 512, name: str | None = None,
                  subject: str = "character", near_distance: int = 6,
                  max_pixels: int = DEFAULT_MAX_PIXELS, buckets: bool | None = None,
                  bucket_step: int = 64) -> DatasetReport:
    """`buckets`, `bucket_step`: as train's --buckets/--no-buckets and --bucket-step (data/buckets.py)."""
    folder = Path(path)
    if not folder.is_dir():
        raise TIStudioError(f"DATASET {path}: not a folder; give the folder of training images")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    candidates = [p for p in files if p.suffix.lower() != ".txt" and not p.stem.endswith(ATTENTION_SUFFIXES)]
    dct = _dct_matrix(HASH_SIDE)
    facts, bad = [], []
    for p in candidates:
        try:
            facts.append(_facts(p, dct, max_pixels))
        except BadImage as exc:
            bad.append((p.name, str(exc)))
    findings = []
    if not facts:
        findings.append(Finding("error", "no-images", "no usable images in the folder; add PNG/JPEG/WebP "
                                "images (and optional same-name .txt captions)"))
    findings += _file_findings(files, {Path(f.name).stem for f in facts}, bad)
    placements = placements_for([(f.width, f.height) for f in facts], width, height, enabled=buckets,
                                step=bucket_step) if facts else None
    if facts:
        findings += _image_findings(facts, (width, height), subject, near_distance, placements is not None)
        findings += _caption_findings(facts, name)
    sizes = ([f"{p.bucket[0]}x{p.bucket[1]}" for p in placements] if placements is not None
             else [f"{width}x{height}"] * len(facts))
    return DatasetReport(str(folder), len(facts), sum(f.caption is not None for f in facts),
                         _stats(facts), tuple(findings), {f.name: s for f, s in zip(facts, sizes)})
