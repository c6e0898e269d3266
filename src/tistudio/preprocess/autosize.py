"""Auto-sized crop: choose each image's own output size among multiples of `step`, so a wide photo
becomes e.g. 768x448 instead of losing half its width to a square crop."""
from __future__ import annotations

from .options import AutoSizeOptions


def aspect_error(size: tuple[int, int], candidate: tuple[int, int]) -> float:
    """0 when the aspects match; 1 - (smaller ratio / larger ratio) otherwise (A1111's measure)."""
    q = (size[0] / size[1]) / (candidate[0] / candidate[1])
    return 1.0 - min(q, 1.0 / q)


def choose_size(size: tuple[int, int], options: AutoSizeOptions) -> tuple[int, int] | None:
    """The best candidate within the bounds and the error threshold, or None when none qualifies
    (the caller then uses the fixed --width/--height)."""
    start = -(-options.min_dim // options.step) * options.step  # first multiple of step >= min_dim
    dims = range(start, options.max_dim + 1, options.step)
    candidates = [(w, h) for w in dims for h in dims
                  if options.min_area <= w * h <= options.max_area
                  and aspect_error(size, (w, h)) <= options.threshold]
    if not candidates:
        return None
    if options.objective == "maximize-area":
        return max(candidates, key=lambda c: (c[0] * c[1], -aspect_error(size, c)))
    return max(candidates, key=lambda c: (-aspect_error(size, c), c[0] * c[1]))
