"""Focal-point crop: where the crop window goes when the image's aspect differs from the target's.

Three finders give points of interest: faces (the Haar cascades that ship inside the opencv
package, so nothing is downloaded), entropy (the crop-sized window with the most detail) and edges
(strong corners). The focal point is the mean of each finder's centroid weighted by its weight
(A1111's defaults: faces 0.9, entropy 0.15, edges 0.5); finders that find nothing do not vote.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw

from ..errors import TIStudioError
from .images import crop_box
from .options import FocalOptions

Box = tuple[float, float, float, float]  # x, y, width, height
FaceDetector = Callable[[np.ndarray], Sequence[Box]]  # uint8 greyscale -> face boxes
ANALYSIS_SIDE = 768  # finders run on a copy at most this long: faces stay findable, cost stays flat
ENTROPY_POSITIONS = 16


@dataclass(frozen=True)
class Focus:
    point: tuple[float, float]  # source pixels
    faces: list[Box] = field(default_factory=list)
    entropy_window: Box | None = None
    corners: list[tuple[float, float]] = field(default_factory=list)


class HaarFaceDetector:
    """Frontal, then alternative frontal, then profile cascade; the first that finds faces wins."""
    CASCADES = ("haarcascade_frontalface_default.xml", "haarcascade_frontalface_alt2.xml",
                "haarcascade_profileface.xml")

    def __init__(self):
        import cv2

        folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
        if folder is None:
            raise TIStudioError("--focal-crop: this OpenCV build has no bundled face detectors; "
                                "install opencv-python-headless<5 or set --focal-face-weight 0")
        self._cascades = [cv2.CascadeClassifier(folder + name) for name in self.CASCADES]
        if any(c.empty() for c in self._cascades):
            raise TIStudioError(f"--focal-crop: face detector files missing under {folder}; "
                                "reinstall opencv-python-headless<5 or set --focal-face-weight 0")

    def __call__(self, grey: np.ndarray) -> list[Box]:
        side = max(16, min(grey.shape) // 12)  # ignore faces too small to matter for the crop
        for cascade in self._cascades:
            found = cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=7, minSize=(side, side))
            if len(found):
                return [tuple(float(v) for v in box) for box in found]
        return []


def _entropy(grey: np.ndarray) -> float:
    hist = np.bincount(grey.ravel(), minlength=256).astype(np.float64)
    p = hist[hist > 0] / hist.sum()
    return float(-(p * np.log2(p)).sum())


def _entropy_window(grey: np.ndarray, win_w: int, win_h: int) -> Box | None:
    """The crop-sized window with the most grey-level entropy, slid along the axis with slack."""
    h, w = grey.shape
    if win_w >= w and win_h >= h:
        return None
    best, best_box = -1.0, None
    for i in range(ENTROPY_POSITIONS + 1):
        x = round((w - win_w) * i / ENTROPY_POSITIONS)
        y = round((h - win_h) * i / ENTROPY_POSITIONS)
        score = _entropy(grey[y:y + win_h, x:x + win_w])
        if score > best:
            best, best_box = score, (float(x), float(y), float(win_w), float(win_h))
    return best_box


def _corners(grey: np.ndarray) -> list[tuple[float, float]]:
    import cv2

    found = cv2.goodFeaturesToTrack(grey, maxCorners=100, qualityLevel=0.04,
                                    minDistance=max(1.0, min(grey.shape) * 0.07))
    return [] if found is None else [(float(x), float(y)) for x, y in found.reshape(-1, 2)]


def _keep_faces(point: tuple[float, float], faces: list[Box],
                window: tuple[float, float]) -> tuple[float, float]:
    """Move the point the least so the crop window holds every face, on each axis where they fit:
    the other finders may pull the window, but never so far that it cuts a face it could hold."""
    moved = []
    for axis in (0, 1):
        lo = min(f[axis] for f in faces)
        hi = max(f[axis] + f[axis + 2] for f in faces)
        size, c = window[axis], point[axis]
        if hi - lo <= size:
            c = min(max(c, hi - size / 2), lo + size / 2)
        moved.append(c)
    return (moved[0], moved[1])


def find_focus(rgb: Image.Image, target: tuple[int, int], options: FocalOptions,
               detector: FaceDetector | None) -> Focus:
    """Focal point of `rgb` (source pixels) for a crop to the `target` aspect."""
    w, h = rgb.size
    k = min(1.0, ANALYSIS_SIDE / max(w, h))
    small = rgb.resize((max(1, round(w * k)), max(1, round(h * k))), Image.Resampling.BILINEAR) if k < 1 else rgb
    grey = np.asarray(small.convert("L"))
    left, top, right, bottom = crop_box(small.size, target)
    votes: list[tuple[float, tuple[float, float]]] = []

    faces = list(detector(grey)) if detector is not None and options.face_weight > 0 else []
    if faces:
        areas = np.array([bw * bh for _, _, bw, bh in faces])
        centres = np.array([(x + bw / 2, y + bh / 2) for x, y, bw, bh in faces])
        votes.append((options.face_weight, tuple((centres * areas[:, None]).sum(0) / areas.sum())))
    window = _entropy_window(grey, round(right - left), round(bottom - top)) if options.entropy_weight > 0 else None
    if window is not None:
        votes.append((options.entropy_weight, (window[0] + window[2] / 2, window[1] + window[3] / 2)))
    corners = _corners(grey) if options.edges_weight > 0 else []
    if corners:
        votes.append((options.edges_weight, tuple(np.mean(corners, axis=0))))

    if votes:
        total = sum(wt for wt, _ in votes)
        point = (sum(wt * p[0] for wt, p in votes) / total, sum(wt * p[1] for wt, p in votes) / total)
    else:
        point = (small.size[0] / 2, small.size[1] / 2)
    if faces:
        point = _keep_faces(point, faces, (right - left, bottom - top))
    return Focus(
        point=(point[0] / k, point[1] / k),
        faces=[(x / k, y / k, bw / k, bh / k) for x, y, bw, bh in faces],
        entropy_window=None if window is None else tuple(v / k for v in window),
        corners=[(x / k, y / k) for x, y in corners],
    )


def debug_image(rgb: Image.Image, focus: Focus, target: tuple[int, int]) -> Image.Image:
    """The source with the evidence drawn on: faces red, entropy window blue, corners green,
    focal point yellow, the chosen crop white."""
    out = rgb.copy()
    draw = ImageDraw.Draw(out)
    line = max(1, round(max(out.size) / 300))
    for x, y, bw, bh in focus.faces:
        draw.rectangle((x, y, x + bw, y + bh), outline=(255, 0, 0), width=line)
    if focus.entropy_window is not None:
        x, y, bw, bh = focus.entropy_window
        draw.rectangle((x, y, x + bw, y + bh), outline=(0, 96, 255), width=line)
    r = 2 * line
    for x, y in focus.corners:
        draw.ellipse((x - r, y - r, x + r, y + r), fill=(0, 220, 0))
    fx, fy = focus.point
    draw.ellipse((fx - 3 * r, fy - 3 * r, fx + 3 * r, fy + 3 * r), outline=(255, 230, 0), width=line)
    draw.rectangle(crop_box(rgb.size, target, focus.point), outline=(255, 255, 255), width=line)
    return out
