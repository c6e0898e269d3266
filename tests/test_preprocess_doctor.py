"""The dataset doctor: each finding on a folder built to trigger it, the table, JSON and exit codes."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image, ImageOps

from tistudio.preprocess import check_dataset
from tistudio.preprocess.doctor import _dct_matrix, perceptual_hash


def noise(seed: int, w: int = 64, h: int = 64) -> Image.Image:
    rng = np.random.default_rng(seed)
    # Smooth blobs, not pixel noise: perceptual hashes compare low frequencies.
    small = rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC)


def build(folder):
    folder.mkdir()
    noise(0).save(folder / "a.png")
    (folder / "a.txt").write_text("a photo of Zorro smiling")
    shutil.copy(folder / "a.png", folder / "a_copy.png")
    Image.fromarray(np.clip(np.asarray(noise(0), np.int16) + 4, 0, 255).astype(np.uint8)).save(folder / "a_near.jpg")
    ImageOps.mirror(noise(1)).save(folder / "b_flipped.png")
    noise(1).save(folder / "b.png")
    (folder / "b.txt").write_text("   ")
    noise(2, 32, 32).save(folder / "small.png")
    noise(3).convert("L").save(folder / "grey.png")
    noise(4, 128, 64).save(folder / "wide.png")
    rgba = noise(5).convert("RGBA")
    alpha = Image.new("L", (64, 64), 255)
    alpha.paste(0, (0, 0, 32, 64))
    rgba.putalpha(alpha)
    rgba.save(folder / "clear.png")
    (folder / "orphan.txt").write_text("nobody's caption")
    Image.new("L", (64, 64), 127).save(folder / "lonely_att.png")
    (folder / "broken.png").write_bytes(b"")
    return folder


def test_findings(tmp_path):
    report = check_dataset(build(tmp_path / "d"), width=64, height=64, name="zorro")
    by_code = {f.code: f for f in report.findings}
    assert report.images == 9 and report.captioned == 2 and report.usable
    assert set(by_code) == {"unreadable", "orphan-captions", "orphan-attention-maps", "few-images",
                            "smaller-than-training", "aspect-differs", "exact-duplicates", "near-duplicates",
                            "flipped-copies", "mixed-styles", "transparency", "uncaptioned", "empty-captions",
                            "name-in-caption"}
    assert by_code["unreadable"].files == ("broken.png (empty file (0 bytes))",)
    assert by_code["orphan-captions"].files == ("orphan.txt",)
    assert by_code["orphan-attention-maps"].files == ("lonely_att.png",)
    assert by_code["few-images"].message.startswith("9 images; the guide recommends 30")
    assert by_code["smaller-than-training"].files == ("small.png",)
    assert by_code["aspect-differs"].level == "info" and by_code["aspect-differs"].files == ("wide.png",)
    assert by_code["exact-duplicates"].files == ("a.png = a_copy.png",)
    assert set(by_code["near-duplicates"].files) == {"a.png ~ a_near.jpg", "a_copy.png ~ a_near.jpg"}
    assert by_code["flipped-copies"].files == ("b.png <> b_flipped.png",)
    assert by_code["mixed-styles"].files == ("grey.png",)
    assert by_code["transparency"].files == ("clear.png",)
    assert by_code["empty-captions"].files == ("b.png",)
    assert by_code["name-in-caption"].files == ("a.png",)
    assert "a.png" not in by_code["uncaptioned"].files and len(by_code["uncaptioned"].files) == 7
    assert report.stats["min_size"] == "32x32" and report.stats["max_size"] == "128x64"
    assert report.stats["landscape"] == 1 and report.stats["square"] == 8


def test_clean_dataset_has_no_warnings(tmp_path):
    folder = tmp_path / "clean"
    folder.mkdir()
    for i in range(30):
        noise(100 + i).save(folder / f"{i:02d}.png")
        (folder / f"{i:02d}.txt").write_text("a red ball")
    report = check_dataset(folder, width=64, height=64, name="zorro")
    assert report.findings == () and report.usable


def test_perceptual_hash_distances():
    dct = _dct_matrix(32)
    grey = lambda im: np.asarray(im.convert("L").resize((32, 32)), np.float64)  # noqa: E731
    a, b = perceptual_hash(grey(noise(7)), dct), perceptual_hash(grey(noise(8)), dct)
    assert bin(a ^ b).count("1") > 16  # unrelated images differ in many bits
    brighter = Image.fromarray(np.clip(np.asarray(noise(7), np.int16) + 10, 0, 255).astype(np.uint8))
    assert bin(a ^ perceptual_hash(grey(brighter), dct)).count("1") <= 2


@pytest.fixture
def run_check(cli):
    return lambda *args: cli("check", *args)


def test_cli_table_json_and_exit_codes(run_check, tmp_path):
    folder = build(tmp_path / "d")
    res = run_check(folder, "--width", 64, "--height", 64, "--report", tmp_path / "r.json")
    assert res.returncode == 0, res.stderr  # warnings only (no --name: 11 of them): still usable
    assert "LEVEL    CHECK" in res.stdout and "flipped-copies" in res.stdout
    assert res.stdout.strip().endswith("result: usable, 11 warnings")
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["usable"] and saved["images"] == 9
    res = run_check(folder, "--json", "--width", 64, "--height", 64)
    assert json.loads(res.stdout) == saved

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "x.txt").write_text("caption without image")
    res = run_check(empty)
    assert res.returncode == 1 and "no-images" in res.stdout and "UNUSABLE" in res.stdout
    res = run_check(tmp_path / "missing")
    assert res.returncode == 2 and "DATASET" in res.stderr and "not a folder" in res.stderr
