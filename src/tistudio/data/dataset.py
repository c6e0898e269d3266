"""Training images on disk: finding them, loading them at the training size, their weight maps.

The folder is scanned flat, as A1111 does: the dataset is the folder's own files, so a log or output
folder placed inside it can never leak into training. Sub-folders are reported (not scanned) so a
user who sorted images into them learns why they were not used.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
from PIL import Image, ImageOps

from ..errors import TIStudioError
from .augment import Augment
from .captions import MissingCaption, UndecodableCaption, caption_for, undecodable_message

# Attention (loss-weight) maps sit beside their image; they are never training images themselves
# (the DreamArtist reference trained on its own `_att_proc` files).
ATTENTION_SUFFIXES = ("_att", "_att_proc")
_MAP_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


@dataclass(frozen=True, eq=False)
class ImageRecord:
    path: Path
    caption: str
    weight_map: torch.Tensor | None = None  # [1, H/f, W/f] float32, see load_weight_map
    grayscale: bool = False                 # a greyscale copy (TrainConfig.grayscale_copies)
    augment: Augment = Augment()            # a crop/colour variant (data/augment.py); default: none


def _probe(path: Path) -> str | None:
    """None if `path` decodes as an image, else why not."""
    try:
        with Image.open(path) as img:
            img.draft("RGB", (64, 64))  # JPEG: decode at reduced scale; still reads the whole stream
            img.load()
    except Image.UnidentifiedImageError:
        return "not an image"
    except Exception as exc:  # noqa: BLE001 - any decoder failure means "skip and tell the user"
        return f"unreadable image ({type(exc).__name__}: {exc})"
    return None


def scan_images(folder: str | Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """(training images sorted by name, [(skipped path, reason)]). Caption `.txt` files, attention
    maps and hidden files are expected companions and are neither returned nor reported."""
    folder = Path(folder)
    if not folder.is_dir():
        raise TIStudioError(f"dataset folder {folder} does not exist; pass --data with a folder of "
                            "training images")
    images: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for path in sorted(folder.iterdir(), key=lambda p: p.name):
        if path.name.startswith("."):
            continue
        if path.is_dir():
            skipped.append((path, "a sub-folder (only the folder's own files are used); move its "
                                  "images up"))
        elif path.suffix.lower() == ".txt" or path.stem.endswith(ATTENTION_SUFFIXES):
            continue
        elif (reason := _probe(path)) is not None:
            skipped.append((path, reason))
        else:
            images.append(path)
    if not images:
        detail = f" ({len(skipped)} other entries skipped, e.g. {skipped[0][0].name}: {skipped[0][1]})" \
            if skipped else ""
        raise TIStudioError(f"dataset folder {folder} has no training images{detail}; put PNG/JPEG/WebP "
                            "images in it")
    return images, skipped


def check_size(width: int, height: int, factor: int = 8) -> None:
    if width <= 0 or height <= 0 or width % factor or height % factor:
        raise TIStudioError(f"--width/--height {width}x{height} must be positive multiples of {factor} "
                            f"(the VAE downsamples by {factor}); use e.g. 512x512")


def _open_upright(path: Path) -> Image.Image:
    try:
        with Image.open(path) as img:
            return ImageOps.exif_transpose(img)  # phones store portraits as rotated landscapes
    except Exception as exc:  # noqa: BLE001 - the file changed since the scan
        raise TIStudioError(f"image {path} cannot be read ({type(exc).__name__}: {exc}); fix or "
                            "remove it") from None


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("RGBA", "LA", "P", "PA") and ("A" in img.mode or "transparency" in img.info):
        # Transparent cut-outs: composite on white rather than whatever colour hides under alpha=0.
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def _pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """uint8 PIL (H, W, C) -> float32 tensor [C, H, W]."""
    data = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
    return data.view(img.height, img.width, len(img.getbands())).permute(2, 0, 1).float()


def load_image(path: str | Path, width: int, height: int, grayscale: bool = False,
               augment: Augment = Augment()) -> torch.Tensor:
    """[3, height, width] float32 in [-1, 1]: upright (EXIF), RGB, scaled to cover width x height,
    cropped (centred, unless `augment` moves it, which may also change colours); with `grayscale`,
    luma (ITU-R 601) copied to all three channels."""
    check_size(width, height)
    img = augment.colour(_to_rgb(_open_upright(Path(path))))
    if grayscale:
        img = img.convert("L").convert("RGB")
    img = ImageOps.fit(img, (width, height), method=Image.Resampling.LANCZOS, centering=augment.centering)
    return _pil_to_tensor(img) / 127.5 - 1.0


def weight_map_path(image_path: str | Path) -> Path | None:
    """`foo_att.<ext>` beside `foo.<ext>` (same extension first, then PNG, JPEG, WebP, BMP)."""
    image_path = Path(image_path)
    for ext in dict.fromkeys((image_path.suffix.lower(), *_MAP_EXTENSIONS)):
        candidate = image_path.with_name(f"{image_path.stem}_att{ext}")
        if candidate.is_file():
            return candidate
    return None


def load_weight_map(path: str | Path, width: int, height: int, factor: int = 8,
                    centering: tuple[float, float] = (0.5, 0.5)) -> torch.Tensor | None:
    """The loss-weight map for image `path`, or None when it has none: [1, height/f, width/f].

    Grayscale v is cropped like the image (`centering`: its crop's), resized to latent size, then
    mapped (DreamArtist): v <= 127 -> v/127 (0..1), v > 127 -> 1 + 4(v-127)/128 (up to 5), so mid-grey leaves the loss alone.
    Size is (width/f, height/f) in PIL's (w, h) order: A1111 swapped them for non-square images.
    """
    check_size(width, height, factor)
    map_path = weight_map_path(path)
    if map_path is None:
        return None
    gray = _open_upright(map_path).convert("L")
    gray = ImageOps.fit(gray, (width // factor, height // factor), method=Image.Resampling.BILINEAR,
                        centering=centering)
    v = _pil_to_tensor(gray)
    return torch.where(v <= 127, v / 127.0, 1.0 + 4.0 * (v - 127.0) / 128.0)


def make_records(images: list[Path], *, width: int, height: int, factor: int = 8,
                 regex: str | None = None, join: str = " ", weight_maps: bool = True,
                 source: str = "auto") -> list[ImageRecord]:
    """One record per image: its caption (`source`: captions.caption_for) and, when `weight_maps`,
    its `_att` map if it has one. Caption files that are not UTF-8 (or missing where required) are
    all named in one error, so one fix pass is enough."""
    records, undecodable, missing = [], [], []
    for p in images:
        try:
            caption = caption_for(p, regex, join, source)
        except UndecodableCaption as exc:
            undecodable.append(exc.path)
            continue
        except MissingCaption as exc:
            missing.append(exc.path)
            continue
        records.append(ImageRecord(p, caption, load_weight_map(p, width, height, factor) if weight_maps else None))
    if undecodable:
        raise TIStudioError(undecodable_message(undecodable))
    if missing:
        raise TIStudioError(f"{len(missing)} caption file(s) missing in {missing[0].parent}: "
                            f"{', '.join(p.name for p in missing)}; write them or use caption_source = \"auto\"")
    return records


GRAYSCALE_TAG = "monochrome"


def grayscale_copies(records: list[ImageRecord]) -> list[ImageRecord]:
    """A greyscale copy of each record (the guide's "add a grayscale map of the training set"), its
    caption tagged "monochrome" so [filewords] prompts can tell the copies from the colour images."""
    return [replace(r, grayscale=True, caption=f"{r.caption}, {GRAYSCALE_TAG}" if r.caption else GRAYSCALE_TAG)
            for r in records]
