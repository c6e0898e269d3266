"""Shipped prompt templates, loading by name or path, refusal without [name], plain counterparts."""
from pathlib import Path

import pytest

from tistudio.data.templates import load_template, plain_counterpart, shipped_names
from tistudio.errors import TIStudioError

SHIPPED = ["hypernetwork", "none", "style", "style_filewords", "subject", "subject_filewords"]


def test_shipped_templates_are_listed_and_well_formed():
    assert shipped_names() == SHIPPED
    assert load_template("none") == ["[name]"]
    for name in SHIPPED[2:]:
        lines = load_template(name)
        assert 10 <= len(lines) <= 25
        assert all("[name]" in line for line in lines)
        assert all(("[filewords]" in line) == name.endswith("_filewords") for line in lines)
        assert len(set(lines)) == len(lines)


def test_the_hypernetwork_template_needs_no_name():
    """A hypernetwork acts on every prompt: its template has only [filewords], and only a
    hypernetwork run may load a template without [name]."""
    lines = load_template("hypernetwork", needs_name=False)
    assert lines[0] == "[filewords]" and all("[filewords]" in l and "[name]" not in l for l in lines)
    with pytest.raises(TIStudioError, match="no line containing \\[name\\]"):
        load_template("hypernetwork")


def test_filewords_templates_pair_line_by_line_with_their_plain_versions():
    for name in ("style", "subject"):
        plain = load_template(name)
        assert plain_counterpart(f"{name}_filewords") == plain
        assert plain_counterpart(name) == plain  # a plain template is its own counterpart
        # Line i of both speaks of the same thing: removing the filewords wording gives line i.
        for fw, p in zip(load_template(f"{name}_filewords"), plain):
            assert fw.split()[0] == p.split()[0]


def test_template_from_a_path_skips_blank_lines(tmp_path: Path):
    path = tmp_path / "mine.txt"
    path.write_text("\n  a drawing of [name]  \n\n[filewords] by [name]\n", encoding="utf-8")
    assert load_template(path) == ["a drawing of [name]", "[filewords] by [name]"]
    assert load_template(str(path)) == load_template(path)


def test_template_without_name_is_refused_naming_the_file(tmp_path: Path):
    path = tmp_path / "broken.txt"
    path.write_text("a photo of [filewords]\na picture\n")
    with pytest.raises(TIStudioError, match="add \\[name\\]") as err:
        load_template(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_unknown_name_lists_shipped_templates():
    with pytest.raises(TIStudioError) as err:
        load_template("portrait")
    assert "'portrait'" in str(err.value)
    for name in SHIPPED:
        assert name in str(err.value)


def test_plain_counterpart_of_a_user_template(tmp_path: Path):
    (tmp_path / "mine_filewords.txt").write_text("[name], [filewords]\n[filewords] by [name]\n")
    (tmp_path / "mine.txt").write_text("[name]\nart by [name]\n")
    assert plain_counterpart(tmp_path / "mine_filewords.txt") == ["[name]", "art by [name]"]


def test_plain_counterpart_missing_or_misaligned_is_refused(tmp_path: Path):
    fw = tmp_path / "solo_filewords.txt"
    fw.write_text("[name], [filewords]\n")
    with pytest.raises(TIStudioError, match="solo.txt"):
        plain_counterpart(fw)
    (tmp_path / "solo.txt").write_text("[name]\nart by [name]\n")
    with pytest.raises(TIStudioError, match="1 and 2 lines"):
        plain_counterpart(fw)
