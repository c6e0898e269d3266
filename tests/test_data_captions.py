"""Captions from sidecar files and file names (A1111 rules)."""
from pathlib import Path

import pytest

from tistudio.data.captions import caption_for
from tistudio.errors import TIStudioError


@pytest.mark.parametrize("name, expected", [
    ("000001-1-a man in suit.png", "a man in suit"),   # the guide's example
    ("00001-0-a man in suit.png", "a man in suit"),
    ("portrait of a cat.jpg", "portrait of a cat"),
    ("--12 x y.webp", "x y"),                           # leading digits and dashes, then spaces
    ("12 - x.png", "- x"),                              # one match only, as A1111's regex
    ("001-a.b.png", "a.b"),                             # only the last extension goes
    ("2girls, smiling.png", "girls, smiling"),          # A1111 strips a leading number even here
    ("a-1-b.png", "a-1-b"),                             # digits inside the name stay
])
def test_caption_from_file_name(tmp_path: Path, name, expected):
    assert caption_for(tmp_path / name) == expected


def test_filename_regex_and_join_from_the_guide(tmp_path: Path):
    path = tmp_path / "000001-1-a man in suit.png"
    assert caption_for(path, r"\w+", ", ") == "a, man, in, suit"
    assert caption_for(path, r"\w+") == "a man in suit"


def test_regex_with_one_group_takes_the_group(tmp_path: Path):
    assert caption_for(tmp_path / "7-red hat blue sky.png", r"(\w)\w*", "") == "rhbs"


def test_sidecar_wins_verbatim_and_ignores_the_regex(tmp_path: Path):
    image = tmp_path / "000001-1-a man in suit.png"
    (tmp_path / "000001-1-a man in suit.txt").write_text("  1girl, red hat,  smiling\n\n", encoding="utf-8")
    assert caption_for(image) == "1girl, red hat,  smiling"
    assert caption_for(image, r"\w+", "|") == "1girl, red hat,  smiling"


def test_empty_sidecar_gives_an_empty_caption(tmp_path: Path):
    (tmp_path / "12-cat.txt").write_text("\n")
    assert caption_for(tmp_path / "12-cat.png") == ""


def test_bad_regex_names_the_option(tmp_path: Path):
    with pytest.raises(TIStudioError, match="--filename-regex") as err:
        caption_for(tmp_path / "a.png", r"(\w+")
    assert "\n" not in str(err.value)


def test_undecodable_sidecar_names_the_file(tmp_path: Path):
    (tmp_path / "a.txt").write_bytes(b"\xff\xfe\xfa bad")
    with pytest.raises(TIStudioError, match="a.txt"):
        caption_for(tmp_path / "a.png")


def test_a_giant_caption_file_is_refused_not_read(tmp_path):
    image = tmp_path / "a.png"
    image.write_bytes(b"")
    (tmp_path / "a.txt").write_bytes(b"x" * (70 * 1024))
    with pytest.raises(TIStudioError, match="larger than 64 KiB") as err:
        caption_for(image)
    assert "a.txt" in str(err.value)
