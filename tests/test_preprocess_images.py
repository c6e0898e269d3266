"""Pure image operations: loading every mode, bad files, crop geometry, splits, auto-size."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tistudio.errors import TIStudioError
from tistudio.preprocess.autosize import aspect_error, choose_size
from tistudio.preprocess.images import (BadImage, Picture, attach_weight_map, cover_resize, crop_box,
                                        decode_weight, encode_weight, is_oversized, keep_size, load_picture,
                                        mirror, split_tiles)
from tistudio.preprocess.options import AutoSizeOptions, PreprocessOptions

BIG = 10_000_000


def quadrants(w: int, h: int) -> Image.Image:
    """Left half red, right half blue: makes orientation and mirroring visible."""
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:, : w // 2] = (255, 0, 0)
    arr[:, w // 2:] = (0, 0, 255)
    return Image.fromarray(arr)


def test_exif_orientation_applied(tmp_path):
    im = quadrants(80, 40)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    im.save(tmp_path / "r.jpg", exif=exif, quality=95)
    pic = load_picture(tmp_path / "r.jpg", BIG)
    assert pic.size == (40, 80)
    arr = np.asarray(pic.rgb).astype(int)
    # Rotating clockwise puts the left (red) half on top.
    assert arr[10, 20, 0] > 200 and arr[10, 20, 2] < 60
    assert arr[70, 20, 2] > 200 and arr[70, 20, 0] < 60


def test_rgba_alpha_becomes_weight_layer(tmp_path):
    im = Image.new("RGBA", (32, 32), (0, 255, 0, 0))
    im.paste((0, 0, 255, 255), (8, 8, 24, 24))
    im.save(tmp_path / "a.png")
    pic = load_picture(tmp_path / "a.png", BIG, background=(255, 255, 255))
    assert pic.rgb.mode == "RGB" and pic.weight.mode == "L"
    assert pic.rgb.getpixel((0, 0)) == (255, 255, 255)  # transparent -> background colour
    assert pic.rgb.getpixel((16, 16)) == (0, 0, 255)
    assert pic.weight.getpixel((0, 0)) == 0 and pic.weight.getpixel((16, 16)) == 127  # weights 0 and 1
    flat = load_picture(tmp_path / "a.png", BIG, alpha="flatten")
    assert flat.weight is None and flat.rgb.getpixel((0, 0)) == (255, 255, 255)


def test_opaque_alpha_is_no_weight(tmp_path):
    Image.new("RGBA", (16, 16), (1, 2, 3, 255)).save(tmp_path / "o.png")
    assert load_picture(tmp_path / "o.png", BIG).weight is None


def test_palette_with_transparency(tmp_path):
    im = Image.new("P", (16, 16), 0)
    im.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    im.paste(1, (0, 0, 8, 16))
    im.info["transparency"] = 1
    im.save(tmp_path / "p.png", transparency=1)
    pic = load_picture(tmp_path / "p.png", BIG)
    assert pic.weight.getpixel((2, 2)) == 0 and pic.weight.getpixel((12, 2)) == 127
    assert pic.rgb.getpixel((12, 2)) == (255, 0, 0)


def test_sixteen_bit_greyscale_is_scaled_not_clipped(tmp_path):
    arr = np.full((8, 8), 65535, np.uint16)
    arr[:, :4] = 32896  # ~ half of 65535
    Image.fromarray(arr).save(tmp_path / "g16.png")
    pic = load_picture(tmp_path / "g16.png", BIG)
    assert pic.rgb.getpixel((6, 0)) == (255, 255, 255)
    assert pic.rgb.getpixel((1, 0)) == (128, 128, 128)


def test_cmyk_and_greyscale_to_rgb(tmp_path):
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "c.jpg", quality=100)
    Image.new("L", (8, 8), 77).save(tmp_path / "l.png")
    r, g, b = load_picture(tmp_path / "c.jpg", BIG).rgb.getpixel((4, 4))
    assert r > 230 and g < 30 and b < 30  # cyan-free, magenta+yellow = red
    assert load_picture(tmp_path / "l.png", BIG).rgb.getpixel((0, 0)) == (77, 77, 77)


@pytest.mark.parametrize("maker,reason", [
    (lambda p: p.write_bytes(b""), "empty file"),
    (lambda p: p.write_text("not an image"), "not an image"),
    (lambda p: p.write_bytes(_png_bytes(p)[:200]), "truncated"),
])
def test_bad_files_raise_badimage(tmp_path, maker, reason):
    path = tmp_path / "bad.png"
    maker(path)
    with pytest.raises(BadImage, match=reason):
        load_picture(path, BIG)


def _png_bytes(path) -> bytes:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
    return path.read_bytes()


def test_gigantic_image_skipped_before_decoding(tmp_path):
    Image.new("RGB", (300, 200)).save(tmp_path / "big.png")
    with pytest.raises(BadImage, match="past the --max-pixels limit 50000"):
        load_picture(tmp_path / "big.png", 50_000)


def test_crop_box_centre_and_clamped_focus():
    assert crop_box((200, 100), (64, 64)) == (50.0, 0.0, 150.0, 100.0)
    assert crop_box((200, 100), (64, 64), focus=(190, 50)) == (100.0, 0.0, 200.0, 100.0)
    assert crop_box((100, 300), (64, 32), focus=(50, 0)) == (0.0, 0.0, 100.0, 50.0)


def test_cover_resize_size_and_centre():
    pic = Picture(quadrants(200, 100))
    out = cover_resize(pic, (64, 64))
    assert out.size == (64, 64)
    arr = np.asarray(out.rgb).astype(int)
    assert arr[32, 5, 0] > 200 and arr[32, 58, 2] > 200  # the centre square keeps red|blue halves


def test_weight_layer_follows_geometry():
    weight = Image.new("L", (200, 100), 0)
    weight.paste(127, (0, 0, 100, 100))
    pic = Picture(quadrants(200, 100), weight)
    flipped = mirror(cover_resize(pic, (64, 64)))
    assert flipped.weight.size == (64, 64)
    assert flipped.weight.getpixel((60, 32)) == 127 and flipped.weight.getpixel((3, 32)) == 0
    assert flipped.rgb.getpixel((60, 32))[0] > 200  # red moved right with its weight


def test_keep_size_trims_to_multiple_of_8():
    assert keep_size(Picture(quadrants(70, 41))).size == (64, 40)
    same = Picture(quadrants(64, 32))
    assert keep_size(same) is same


def test_split_threshold_and_tiles():
    assert not is_oversized((100, 140), (64, 64), 0.5)  # 1.4x: under 1 + 0.5
    assert is_oversized((100, 160), (64, 64), 0.5)
    # 64 wide x 256 tall -> scaled 64x256: ceil((256 - 12.8) / 51.2) = 5 tiles.
    arr = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 64, axis=1)
    tiles = split_tiles(Picture(Image.fromarray(arr).convert("RGB")), (64, 64), 0.2)
    assert len(tiles) == 5 and all(t.size == (64, 64) for t in tiles)
    tops = [np.asarray(t.rgb)[0, 32, 0] for t in tiles]
    assert tops[0] <= 1 and np.asarray(tiles[-1].rgb)[-1, 32, 0] >= 254  # first/last touch the edges
    assert all(b - a == 48 for a, b in zip(tops, tops[1:]))  # even steps of (256-64)/4
    wide = split_tiles(Picture(quadrants(300, 100)), (64, 64), 0.0)
    assert len(wide) == 3


def test_weight_encoding_round_trip():
    w = np.array([0.0, 0.5, 1.0, 3.0, 5.0])
    assert np.allclose(decode_weight(np.asarray(encode_weight(w[None]))[0]), w, atol=0.03)


def test_user_attention_map_multiplies_alpha(tmp_path):
    Image.new("L", (16, 16), 255).save(tmp_path / "x_att.png")  # weight 5
    alpha = Image.new("L", (16, 16), 127)
    alpha.paste(0, (0, 0, 8, 16))
    pic = attach_weight_map(Picture(Image.new("RGB", (16, 16)), alpha), tmp_path / "x_att.png")
    assert pic.weight.getpixel((2, 2)) == 0 and pic.weight.getpixel((12, 2)) == 255


def test_auto_size_objectives():
    opts = AutoSizeOptions()
    assert choose_size((1600, 900), opts) == (768, 448)  # largest under 640*640 within 10% of 16:9
    assert aspect_error((1600, 900), (768, 448)) <= 0.1
    exact = AutoSizeOptions(objective="minimize-error", max_area=1024 * 1024)
    assert choose_size((1000, 1000), exact) == (768, 768)
    assert choose_size((4000, 100), opts) is None  # 40:1 fits no candidate: caller keeps --width/--height


def test_options_errors_name_the_flag():
    with pytest.raises(TIStudioError, match="--width 500"):
        PreprocessOptions(width=500)
    with pytest.raises(TIStudioError, match="--keep-size cannot be combined with --split"):
        PreprocessOptions(keep_size=True, split=True)
    with pytest.raises(TIStudioError, match="--split-overlap"):
        PreprocessOptions(split_overlap=1.0)
