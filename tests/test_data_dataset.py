"""Dataset scanning, image loading geometry, EXIF, transparency, and attention (weight) maps."""
from pathlib import Path

import pytest
import torch
from PIL import Image

from tistudio.data.dataset import (load_image, load_weight_map, make_records, scan_images,
                                   weight_map_path)
from tistudio.errors import TIStudioError

RED, BLUE, GREEN = (255, 0, 0), (0, 0, 255), (0, 255, 0)


def stripes(size, colours, vertical=True) -> Image.Image:
    """Equal stripes of `colours` side by side (vertical=True) or stacked."""
    img = Image.new("RGB", size)
    n, (w, h) = len(colours), size
    for i, c in enumerate(colours):
        box = (i * w // n, 0, (i + 1) * w // n, h) if vertical else (0, i * h // n, w, (i + 1) * h // n)
        img.paste(c, box)
    return img


def colour_at(t: torch.Tensor, y: int, x: int) -> tuple[int, ...]:
    return tuple(int(round((v + 1) * 127.5)) for v in t[:, y, x].tolist())


def test_scan_skips_attention_maps_and_captions_and_lists_bad_files(tmp_path: Path):
    Image.new("RGB", (16, 16)).save(tmp_path / "b.png")
    Image.new("RGB", (16, 16)).save(tmp_path / "a.jpg")
    Image.new("L", (16, 16)).save(tmp_path / "a_att.png")
    Image.new("L", (16, 16)).save(tmp_path / "b_att_proc.png")
    (tmp_path / "a.txt").write_text("caption")
    (tmp_path / "notes.md").write_text("hello")
    good = tmp_path / "c.png"
    Image.new("RGB", (64, 64), RED).save(good)
    (tmp_path / "broken.png").write_bytes(good.read_bytes()[:60])  # truncated
    (tmp_path / "sub").mkdir()
    Image.new("RGB", (16, 16)).save(tmp_path / "sub" / "nested.png")
    (tmp_path / ".DS_Store").write_bytes(b"\0\1")
    images, skipped = scan_images(tmp_path)
    assert [p.name for p in images] == ["a.jpg", "b.png", "c.png"]
    reasons = {p.name: r for p, r in skipped}
    assert set(reasons) == {"broken.png", "notes.md", "sub"}
    assert reasons["notes.md"] == "not an image"
    assert reasons["broken.png"].startswith("unreadable image")
    assert "sub-folder" in reasons["sub"]


def test_scan_refuses_missing_and_empty_folders(tmp_path: Path):
    with pytest.raises(TIStudioError, match="does not exist; pass --data"):
        scan_images(tmp_path / "nope")
    with pytest.raises(TIStudioError, match="has no training images"):
        scan_images(tmp_path)
    (tmp_path / "x.png").write_text("not really")
    with pytest.raises(TIStudioError, match="x.png: not an image"):
        scan_images(tmp_path)


def test_landscape_is_centre_cropped(tmp_path: Path):
    stripes((64, 32), [GREEN, RED, BLUE, GREEN]).save(tmp_path / "l.png")
    t = load_image(tmp_path / "l.png", 32, 32)
    assert t.shape == (3, 32, 32) and t.dtype == torch.float32
    assert t.min() >= -1 and t.max() <= 1
    assert colour_at(t, 16, 2) == RED and colour_at(t, 16, 29) == BLUE  # the green edges are cut


def test_portrait_is_centre_cropped_and_non_square_targets_keep_orientation(tmp_path: Path):
    stripes((32, 64), [GREEN, RED, BLUE, GREEN], vertical=False).save(tmp_path / "p.png")
    t = load_image(tmp_path / "p.png", 32, 32)
    assert colour_at(t, 2, 16) == RED and colour_at(t, 29, 16) == BLUE
    tall = load_image(tmp_path / "p.png", 16, 32)  # width 16, height 32: scaled down, nothing cut
    assert tall.shape == (3, 32, 16)
    assert colour_at(tall, 1, 8) == GREEN and colour_at(tall, 30, 8) == GREEN
    wide = load_image(tmp_path / "p.png", 64, 32)  # scaled up to 64 wide, centre 32 rows kept
    assert wide.shape == (3, 32, 64)
    assert colour_at(wide, 1, 32) == RED and colour_at(wide, 30, 32) == BLUE


def test_exif_orientation_is_applied(tmp_path: Path):
    # Stored landscape (left red, right blue) with orientation 6: displayed rotated 90° clockwise,
    # so the viewer sees a portrait with red on top.
    img = stripes((64, 32), [RED, BLUE])
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(tmp_path / "r.jpg", exif=exif, quality=95)
    t = load_image(tmp_path / "r.jpg", 32, 64)
    assert t.shape == (3, 64, 32)
    assert t[0, 4, 16] > 0.8 and t[2, 4, 16] < -0.8     # top red
    assert t[2, 60, 16] > 0.8 and t[0, 60, 16] < -0.8   # bottom blue


def test_transparency_becomes_white_and_grey_becomes_rgb(tmp_path: Path):
    Image.new("RGBA", (16, 16), (0, 0, 0, 0)).save(tmp_path / "t.png")
    assert torch.allclose(load_image(tmp_path / "t.png", 16, 16), torch.ones(3, 16, 16))
    Image.new("L", (16, 16), 0).save(tmp_path / "g.png")
    assert torch.allclose(load_image(tmp_path / "g.png", 8, 8), -torch.ones(3, 8, 8))


@pytest.mark.parametrize("w, h", [(30, 32), (32, 12), (0, 32)])
def test_size_must_be_a_multiple_of_8(tmp_path: Path, w, h):
    Image.new("RGB", (16, 16)).save(tmp_path / "a.png")
    with pytest.raises(TIStudioError, match="--width/--height"):
        load_image(tmp_path / "a.png", w, h)


@pytest.mark.parametrize("value, weight", [(0, 0.0), (127, 1.0), (255, 5.0), (191, 3.0), (64, 64 / 127)])
def test_weight_map_value_mapping(tmp_path: Path, value, weight):
    Image.new("RGB", (32, 32)).save(tmp_path / "a.png")
    Image.new("L", (32, 32), value).save(tmp_path / "a_att.png")
    m = load_weight_map(tmp_path / "a.png", 32, 32, 8)
    assert m.shape == (1, 4, 4)
    assert torch.allclose(m, torch.full((1, 4, 4), weight))


def test_weight_map_non_square_keeps_width_and_height(tmp_path: Path):
    Image.new("RGB", (64, 32)).save(tmp_path / "a.png")
    att = Image.new("L", (64, 32), 0)
    att.paste(255, (0, 0, 16, 32))       # left quarter: weight 5
    att.paste(127, (0, 16, 64, 32))      # bottom half: weight 1 (paints over the left quarter)
    att.save(tmp_path / "a_att.png")
    m = load_weight_map(tmp_path / "a.png", 64, 32, 8)
    assert m.shape == (1, 4, 8)          # [1, H/8, W/8]; A1111 produced [1, 8, 4]
    assert m[0, 0, 0] == pytest.approx(5.0) and m[0, 0, 7] == pytest.approx(0.0)
    assert m[0, 3, 0] == pytest.approx(1.0) and m[0, 3, 7] == pytest.approx(1.0)


def test_weight_map_found_beside_any_image_extension(tmp_path: Path):
    Image.new("RGB", (16, 16)).save(tmp_path / "a.jpg")
    assert weight_map_path(tmp_path / "a.jpg") is None
    assert load_weight_map(tmp_path / "a.jpg", 16, 16) is None
    Image.new("L", (16, 16), 255).save(tmp_path / "a_att.png")
    assert weight_map_path(tmp_path / "a.jpg") == tmp_path / "a_att.png"


def test_make_records_captions_and_maps(tmp_path: Path):
    Image.new("RGB", (16, 16)).save(tmp_path / "01-red hat.png")
    Image.new("RGB", (16, 16)).save(tmp_path / "02-blue.png")
    Image.new("L", (16, 16), 255).save(tmp_path / "02-blue_att.png")
    (tmp_path / "02-blue.txt").write_text("blue sky")
    images, _ = scan_images(tmp_path)
    records = make_records(images, width=16, height=16, regex=r"\w+", join=", ")
    assert [r.caption for r in records] == ["red, hat", "blue sky"]
    assert records[0].weight_map is None and torch.allclose(records[1].weight_map, torch.full((1, 2, 2), 5.0))
    assert make_records(images, width=16, height=16, weight_maps=False)[1].weight_map is None
