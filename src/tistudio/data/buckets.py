"""Aspect-ratio buckets (docs/buckets.md): images of mixed shapes train at sizes of about the training
area instead of all being cropped to one square, as kohya's sd-scripts do.

The buckets are every (w, h) with sides multiples of `step` between the side limits and an area of
at most the training area (each width with the tallest height that fits, and its transpose), plus
the training size itself. Each image goes to the bucket nearest its aspect ratio (in log ratio, so 2:1 and 1:2 are
equally far from 1:1; ties to the larger bucket), is scaled to cover it and centre-cropped: only the
rounding of the bucket's aspect to `step` is cropped away, never a square's worth of the picture.

A Placement records what SDXL's size conditioning needs: the image's upright original size and the
top-left corner of the crop in the resized image (models/denoiser.size_ids).
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image

from ..errors import TIStudioError

_SWAPPED_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that turn the picture a quarter
_ORIENTATION_TAG = 0x0112


@dataclass(frozen=True)
class Placement:
    bucket: tuple[int, int]     # (width, height) the image trains at
    original: tuple[int, int]   # (width, height) of the upright source image
    resized: tuple[int, int]    # (width, height) of the image scaled to cover the bucket
    crop: tuple[int, int]       # (top, left) of the bucket in the resized image

    def size_ids(self, flip: bool = False) -> list[int]:
        """SDXL's added time ids: original (h, w), crop (top, left), target (h, w). A mirrored image's
        crop is measured from the other edge, as the picture it shows was cropped there."""
        (bw, bh), (ow, oh), (top, left) = self.bucket, self.original, self.crop
        if flip:
            left = self.resized[0] - bw - left
        return [oh, ow, top, left, bh, bw]


def _scaled(side: int, scale: float) -> int:
    return int(round(side * scale))


def _crop_box(original: tuple[int, int], bucket: tuple[int, int],
              centering: tuple[float, float] = (0.5, 0.5)) -> tuple[float, float, float, float]:
    """(left, top, width, height) of the source region that ImageOps.fit scales into `bucket`
    (the region load_image keeps), in source pixels."""
    (ow, oh), (bw, bh) = original, bucket
    if ow / oh >= bw / bh:
        width, height = bw / bh * oh, float(oh)
    else:
        width, height = float(ow), ow / (bw / bh)
    return (ow - width) * centering[0], (oh - height) * centering[1], width, height


def place(original: tuple[int, int], bucket: tuple[int, int],
          centering: tuple[float, float] = (0.5, 0.5)) -> Placement:
    """Where `original` (w, h), cropped at `centering` (ImageOps.fit's; centred by default), lands in
    `bucket` (w, h)."""
    left, top, width, _ = _crop_box(original, bucket, centering)
    scale = bucket[0] / width
    resized = (max(bucket[0], _scaled(original[0], scale)), max(bucket[1], _scaled(original[1], scale)))
    return Placement(bucket, original, resized, (_scaled(top, scale), _scaled(left, scale)))


def bucket_sizes(width: int, height: int, step: int = 64, min_side: int = 0, max_side: int = 0) -> list[tuple[int, int]]:
    """Every bucket (w, h) for a training size: area <= width*height, sides multiples of `step` within
    [min_side, max_side] (0: half the shorter training side, twice the longer), sorted by aspect."""
    min_side = min_side or max(step, min(width, height) // 2 // step * step)
    max_side = max_side or 2 * max(width, height)
    area = width * height
    sizes = {(width, height)}
    for w in range(-(-min_side // step) * step, max_side + 1, step):
        h = min(max_side // step * step, area // w // step * step)
        if h >= min_side:
            sizes |= {(w, h), (h, w)}  # both orientations: portraits get the landscapes' buckets
    return sorted(sizes, key=lambda s: (s[0] / s[1], s[0] * s[1]))


def nearest_bucket(size: tuple[int, int], buckets: Sequence[tuple[int, int]]) -> tuple[int, int]:
    aspect = math.log(size[0] / size[1])
    return min(buckets, key=lambda b: (round(abs(math.log(b[0] / b[1]) - aspect), 9), -b[0] * b[1]))


def upright_size(path: str | Path) -> tuple[int, int]:
    """(width, height) as load_image sees the picture (EXIF rotation applied), without decoding it."""
    try:
        with Image.open(path) as img:
            w, h = img.size
            turned = img.getexif().get(_ORIENTATION_TAG) in _SWAPPED_ORIENTATIONS
    except Exception as exc:  # noqa: BLE001 - the file changed since the scan
        raise TIStudioError(f"image {path} cannot be read ({type(exc).__name__}: {exc}); fix or "
                            "remove it") from None
    return (h, w) if turned else (w, h)


def plan_buckets(paths: Sequence[str | Path], width: int, height: int, *, enabled: bool | None,
                 step: int = 64, min_side: int = 0, max_side: int = 0, factor: int = 8) -> list[Placement] | None:
    """Each image's Placement, or None when bucketing is off (--no-buckets, or by default when every
    image has the same aspect ratio: then today's single fixed size is kept bit for bit)."""
    if enabled is False:
        return None
    return placements_for([upright_size(p) for p in paths], width, height, enabled=enabled, step=step,
                          min_side=min_side, max_side=max_side, factor=factor)


def placements_for(sizes: Sequence[tuple[int, int]], width: int, height: int, *, enabled: bool | None,
                   step: int = 64, min_side: int = 0, max_side: int = 0, factor: int = 8) -> list[Placement] | None:
    """plan_buckets for images of known upright (width, height): also `tistudio check`'s."""
    if enabled is False:
        return None
    if step % factor:
        raise TIStudioError(f"--bucket-step {step}: must be a multiple of {factor} (the VAE downsamples by {factor})")
    if enabled is None and len({round(w / h, 3) for w, h in sizes}) <= 1:
        return None
    buckets = bucket_sizes(width, height, step, min_side, max_side)
    return [place(s, nearest_bucket(s, buckets)) for s in sizes]


def used_buckets(placements: Sequence[Placement]) -> list[tuple[int, int]]:
    """The buckets (w, h) some image trains at, in bucket order (by aspect)."""
    return sorted({p.bucket for p in placements}, key=lambda s: (s[0] / s[1], s[0] * s[1]))


def bucket_table(placements: Sequence[Placement]) -> dict[str, int]:
    """"WxH" -> number of images, in bucket order (by aspect), for the log and summary.json."""
    counts = Counter(p.bucket for p in placements)
    return {f"{w}x{h}": counts[(w, h)] for w, h in used_buckets(placements)}


def common_bucket(placements: Sequence[Placement], width: int, height: int) -> tuple[int, int]:
    """The bucket (w, h) holding the most images; a tie goes to the one nearest the training size's
    aspect ratio (then the larger, as nearest_bucket breaks ties): where previews are drawn."""
    counts = Counter(p.bucket for p in placements)
    most = max(counts.values())
    return nearest_bucket((width, height), [b for b, n in counts.items() if n == most])


def size_ids_tensor(placements: Sequence[Placement], flips: Sequence[bool]) -> torch.Tensor:
    """[B, 6] float32 SDXL time ids of a micro-batch (models/denoiser.predict)."""
    return torch.tensor([p.size_ids(f) for p, f in zip(placements, flips)], dtype=torch.float32)
