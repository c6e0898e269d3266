"""`tistudio preprocess` end to end on a folder of mixed images, run in process (the `cli` fixture)."""
from __future__ import annotations

import hashlib
import re

import numpy as np
import pytest
from PIL import Image

from tistudio.preprocess import AutoSizeOptions, PreprocessOptions, preprocess
from tistudio.preprocess.caption import merge_existing


def make_mixed_folder(src):
    """Different sizes, orientations and modes, a caption, an attention map, and bad files."""
    src.mkdir()
    rng = np.random.default_rng(0)
    noise = lambda w, h: Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))  # noqa: E731
    noise(96, 64).save(src / "landscape.jpg")
    noise(48, 160).save(src / "tall.png")  # 3.3x the target shape: split
    exif = Image.Exif()
    exif[0x0112] = 6
    noise(80, 60).save(src / "rotated.jpg", exif=exif)
    rgba = Image.new("RGBA", (64, 64), (255, 0, 0, 0))
    rgba.paste((0, 0, 255, 255), (16, 16, 48, 48))
    rgba.save(src / "transparent.png")
    noise(70, 70).convert("P").save(src / "palette.png")
    Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)).save(src / "grey16.png")
    noise(40, 40).convert("L").save(src / "grey.png")
    (src / "grey.txt").write_text("a grey square")
    Image.new("L", (40, 40), 255).save(src / "grey_att.png")  # the user's attention map for grey.png
    (src / "empty.png").write_bytes(b"")
    (src / "notes.md").write_text("not an image")
    data = (src / "landscape.jpg").read_bytes()
    (src / "truncated.jpg").write_bytes(data[: len(data) // 2])
    return src


def snapshot(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture
def preprocess_cli(cli):
    return lambda *args: cli("preprocess", *args)


def test_cli_on_mixed_folder(preprocess_cli, tmp_path):
    src = make_mixed_folder(tmp_path / "src")
    before = snapshot(src)
    out = tmp_path / "out"
    res = preprocess_cli(src, out, "--width", 64, "--height", 64, "--flip", "--split", "--existing-captions", "copy")
    assert res.returncode == 0, res.stderr
    assert snapshot(src) == before  # SRC is never modified
    names = sorted(p.name for p in out.iterdir())
    # Sorted sources: empty grey grey16 landscape notes palette rotated tall transparent truncated.
    expected = ["00001-0-grey.png", "00001-0-grey.txt", "00001-0-grey_att.png", "00001-1-grey.png",
                "00001-1-grey.txt", "00001-1-grey_att.png", "00002-0-grey16.png", "00002-1-grey16.png",
                "00003-0-landscape.png", "00003-1-landscape.png", "00005-0-palette.png", "00005-1-palette.png",
                "00006-0-rotated.png", "00006-1-rotated.png"]
    expected += [f"00007-{i}-tall.png" for i in range(8)]  # 4 tiles + 4 mirrors
    expected += ["00008-0-transparent.png", "00008-0-transparent_att.png", "00008-1-transparent.png",
                 "00008-1-transparent_att.png"]
    assert names == sorted(expected)  # also: no temporary files left behind
    for name in (n for n in names if n.endswith(".png")):
        im = Image.open(out / name)
        assert im.size == (64, 64) and im.mode == ("L" if name.endswith("_att.png") else "RGB")
    assert (out / "00001-1-grey.txt").read_text() == "a grey square"
    assert Image.open(out / "00001-0-grey_att.png").getpixel((5, 5)) == 255  # user's map carried over
    att = Image.open(out / "00008-0-transparent_att.png")
    assert att.getpixel((0, 0)) == 0 and att.getpixel((32, 32)) == 127
    a, b = (np.asarray(Image.open(out / f"00003-{i}-landscape.png")) for i in (0, 1))
    assert np.array_equal(a[:, ::-1], b)  # the flipped copy is an exact mirror
    assert "10 source files -> 20 images (2 captions, 4 loss-weight maps)" in res.stdout
    for bad, why in (("empty.png", "empty file"), ("notes.md", "not an image"), ("truncated.jpg", "truncated")):
        assert re.search(rf"  {re.escape(bad)}: .*{why}", res.stdout), res.stdout


def test_destination_inside_or_equal_source_refused(preprocess_cli, tmp_path):
    src = make_mixed_folder(tmp_path / "src")
    before = snapshot(src)
    for dst in (src, src / "out"):
        res = preprocess_cli(src, dst)
        assert res.returncode == 2
        assert res.stderr.strip().startswith("error: DST") and "inside SRC" in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1
    assert snapshot(src) == before and not (src / "out").exists()


def test_caption_in_filename_survives_the_trainers_prefix_rule(preprocess_cli, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    Image.new("RGB", (32, 32), (9, 9, 9)).save(src / "a.png")
    (src / "a.txt").write_text("1girl, red/hair: smile?")
    Image.new("RGB", (32, 32), (9, 9, 9)).save(src / "b.png")
    res = preprocess_cli(src, tmp_path / "out", "--width", 32, "--height", 32, "--existing-captions", "copy",
                         "--caption-in-filename", "--no-progress")
    assert res.returncode == 0, res.stderr
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["00000-0- 1girl, redhair smile.png", "00001-0-b.png"]  # no .txt sidecars
    stem = names[0][:-4]
    assert re.sub(r"^[-\d]+\s*", "", stem) == "1girl, redhair smile"  # what [filewords] will read


@pytest.mark.parametrize("action,expected", [
    ("ignore", "tags"), ("copy", "mine"), ("prepend", "mine, tags"), ("append", "tags, mine")])
def test_existing_caption_actions(action, expected):
    assert merge_existing("tags", "mine", action) == expected
    assert merge_existing("tags", None, action) == "tags"  # no user caption: the generated one


def test_keep_size_and_auto_size(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    Image.new("RGB", (1600, 900), (50, 60, 70)).save(src / "wide.png")
    Image.new("RGB", (100, 70), (50, 60, 70)).save(src / "odd.png")
    preprocess(src, tmp_path / "keep", PreprocessOptions(keep_size=True), progress=False)
    assert Image.open(tmp_path / "keep" / "00000-0-odd.png").size == (96, 64)
    assert Image.open(tmp_path / "keep" / "00001-0-wide.png").size == (1600, 896)
    preprocess(src, tmp_path / "auto", PreprocessOptions(width=64, height=64, auto_size=AutoSizeOptions()),
               progress=False)
    assert Image.open(tmp_path / "auto" / "00001-0-wide.png").size == (768, 448)
    # 10:7 fits nothing within 10% under 640*640 at step 64 except 640x448; check the chosen size fits.
    w, h = Image.open(tmp_path / "auto" / "00000-0-odd.png").size
    assert w % 64 == 0 and h % 64 == 0 and abs((w / h) / (100 / 70) - 1) <= 0.11


def test_focal_debug_only_for_cropped_images(preprocess_cli, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    Image.new("RGB", (128, 64), (80, 80, 80)).save(src / "wide.png")
    Image.new("RGB", (64, 64), (80, 80, 80)).save(src / "square.png")
    res = preprocess_cli(src, tmp_path / "out", "--width", 32, "--height", 32, "--focal-crop", "--focal-debug",
                         "--no-progress")
    assert res.returncode == 0, res.stderr
    assert [p.name for p in (tmp_path / "out" / "focal_debug").iterdir()] == ["00001-wide.png"]
    assert Image.open(tmp_path / "out" / "focal_debug" / "00001-wide.png").size == (128, 64)


def test_missing_model_and_source_errors(preprocess_cli, tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    monkeypatch.delenv("TISTUDIO_BLIP_MODEL", raising=False)
    res = preprocess_cli(src, tmp_path / "out", "--blip")
    assert res.returncode == 2 and "--blip: no path given and $TISTUDIO_BLIP_MODEL is not set" in res.stderr
    res = preprocess_cli(src, tmp_path / "out", "--tagger", tmp_path / "nowhere.onnx")
    assert res.returncode == 2 and "file not found; give a WD14 or DeepDanbooru model" in res.stderr
    res = preprocess_cli(tmp_path / "absent", tmp_path / "out")
    assert res.returncode == 2 and "SRC" in res.stderr and "not a folder" in res.stderr
    assert not (tmp_path / "out").exists()  # nothing written before the inputs are known good
