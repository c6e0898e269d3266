"""Focal-point crop geometry: faces (a real photo when one is installed, else a stand-in detector),
entropy and edges pull the crop window; a found face always stays inside the crop."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tistudio.preprocess.focal import HaarFaceDetector, debug_image, find_focus
from tistudio.preprocess.images import crop_box
from tistudio.preprocess.options import FocalOptions


def inside(face, box) -> bool:
    x, y, w, h = face
    return box[0] <= x and box[1] <= y and x + w <= box[2] and y + h <= box[3]


def sample_face_photo() -> Path | None:
    """OpenCV ships no sample photo; matplotlib (when installed) ships a portrait of Grace Hopper."""
    try:
        import matplotlib
    except ImportError:
        return None
    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    return path if path.is_file() else None


def test_bundled_haar_detector_finds_real_face_and_crop_keeps_it():
    photo = sample_face_photo()
    if photo is None:
        pytest.skip("no sample face photo installed (matplotlib's grace_hopper.jpg)")
    rgb = Image.open(photo).convert("RGB")  # 512x600 portrait, face in the upper half
    target = (64, 32)  # wide crop: only a 512x256 band of the image survives
    focus = find_focus(rgb, target, FocalOptions(), HaarFaceDetector())
    assert len(focus.faces) == 1
    box = crop_box(rgb.size, target, focus.point)
    assert inside(focus.faces[0], box)
    centred = crop_box(rgb.size, target)
    assert not inside(focus.faces[0], centred)  # the plain centre crop would cut the face


def stand_in(face):
    return lambda grey: [face]


def test_face_stays_in_crop_even_when_other_finders_outvote_it():
    # 64x256 tall image: detail (noise) at the top pulls entropy and edges up; the face is at the bottom.
    rng = np.random.default_rng(0)
    arr = np.full((256, 64, 3), 128, np.uint8)
    arr[:60] = rng.integers(0, 255, (60, 64, 3), dtype=np.uint8)
    rgb = Image.fromarray(arr)
    face = (10.0, 200.0, 40.0, 40.0)
    # A small face weight: the weighted mean alone would sit near the detail, far above the face.
    focus = find_focus(rgb, (32, 32), FocalOptions(face_weight=0.1), stand_in(face))
    box = crop_box(rgb.size, (32, 32), focus.point)
    assert inside(face, box)
    assert focus.corners and focus.entropy_window[1] < 60  # the other finders did vote upwards


def test_entropy_and_edges_pull_crop_to_detail():
    rng = np.random.default_rng(1)
    arr = np.full((64, 256, 3), 200, np.uint8)
    arr[:, 190:250] = rng.integers(0, 255, (64, 60, 3), dtype=np.uint8)
    rgb = Image.fromarray(arr)
    for opts in (FocalOptions(face_weight=0, edges_weight=0), FocalOptions(face_weight=0, entropy_weight=0)):
        focus = find_focus(rgb, (64, 64), opts, None)
        left, _, right, _ = crop_box(rgb.size, (64, 64), focus.point)
        assert right > 220 and left > 150, (opts, focus.point)


def test_nothing_found_means_centre():
    rgb = Image.new("RGB", (200, 100), (90, 90, 90))
    focus = find_focus(rgb, (64, 64), FocalOptions(entropy_weight=0), stand_in_none())
    assert focus.point == (100.0, 50.0)


def stand_in_none():
    return lambda grey: []


def test_large_image_is_analysed_small_but_answered_in_source_pixels():
    rgb = Image.new("RGB", (3000, 1000), (90, 90, 90))
    face = (2000.0 * 768 / 3000, 300.0 * 768 / 3000, 100.0, 100.0)  # detector sees the 768-wide copy
    focus = find_focus(rgb, (64, 64), FocalOptions(entropy_weight=0, edges_weight=0), stand_in(face))
    assert focus.faces[0][0] == pytest.approx(2000.0)
    assert focus.point[0] == pytest.approx(2000 + 100 * 3000 / 768 / 2)


def test_debug_image_marks_face_and_crop():
    rgb = Image.new("RGB", (128, 64), (0, 0, 0))
    focus = find_focus(rgb, (64, 64), FocalOptions(entropy_weight=0, edges_weight=0),
                       stand_in((80.0, 10.0, 20.0, 20.0)))
    dbg = debug_image(rgb, focus, (64, 64))
    assert dbg.size == rgb.size
    assert dbg.getpixel((80, 20)) == (255, 0, 0)  # face outline
    left = round(crop_box(rgb.size, (64, 64), focus.point)[0])
    assert dbg.getpixel((left, 40)) == (255, 255, 255)  # crop outline
