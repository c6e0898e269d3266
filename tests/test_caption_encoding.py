"""Captions as A1111 users keep them: preprocess carries existing .txt captions by default; every
reader takes captions as UTF-8 and names every file that is not (never a silent U+FFFD);
`preprocess --caption-encoding` reads other encodings and writes UTF-8."""
import json

import pytest
from PIL import Image

from tistudio import api
from tistudio.cli.main import main
from tistudio.config import TrainConfig
from tistudio.errors import TIStudioError
from tistudio.train.run import train


def one_line_error(capsys, code) -> str:
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line and "it/s]" not in line]
    assert code == 2 and len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.fixture
def src(tmp_path):
    folder = tmp_path / "src"
    folder.mkdir()
    for name in ("a", "b", "c"):
        Image.new("RGB", (32, 32), (40, 90, 200)).save(folder / f"{name}.png")
    (folder / "a.txt").write_text("a blue square, café", encoding="utf-8")
    return folder


def test_preprocess_keeps_existing_captions_by_default(src, tmp_path, capsys):
    assert main(["preprocess", str(src), str(tmp_path / "out"), "--width", "32", "--height", "32",
                 "--no-progress"]) == 0
    assert (tmp_path / "out" / "00000-0-a.txt").read_text(encoding="utf-8") == "a blue square, café"
    assert not (tmp_path / "out" / "00001-0-b.txt").exists()  # no caption and no captioner: none written
    assert main(["preprocess", str(src), str(tmp_path / "ign"), "--width", "32", "--height", "32",
                 "--existing-captions", "ignore", "--no-progress"]) == 0
    assert not list((tmp_path / "ign").glob("*.txt"))


def test_preprocess_names_every_caption_that_is_not_utf8(src, tmp_path, capsys):
    (src / "b.txt").write_bytes("a red circle, naïve".encode("cp1252"))
    (src / "c.txt").write_bytes(b"\xff\xfe\x00bad")
    line = one_line_error(capsys, main(["preprocess", str(src), str(tmp_path / "out"), "--no-progress"]))
    assert line == (f"error: 2 caption file(s) in {src} are not utf-8 text: b.txt, c.txt; re-save them as UTF-8, "
                    "or pass --caption-encoding ENC (e.g. cp1252), the encoding they were written in")
    assert not (tmp_path / "out").exists()  # refused before any image was written


def test_preprocess_reads_another_encoding_and_writes_utf8(src, tmp_path):
    (src / "a.txt").write_bytes("a blue square, café".encode("cp1252"))
    (src / "b.txt").write_bytes("a red circle, naïve".encode("cp1252"))
    assert main(["preprocess", str(src), str(tmp_path / "out"), "--width", "32", "--height", "32",
                 "--caption-encoding", "cp1252", "--no-progress"]) == 0
    assert (tmp_path / "out" / "00000-0-a.txt").read_bytes() == "a blue square, café".encode("utf-8")
    assert (tmp_path / "out" / "00001-0-b.txt").read_text(encoding="utf-8") == "a red circle, naïve"


def test_unknown_caption_encoding_is_one_line(src, tmp_path, capsys):
    line = one_line_error(capsys, main(["preprocess", str(src), str(tmp_path / "out"), "--caption-encoding", "klingon"]))
    assert line == "error: --caption-encoding 'klingon': not an encoding Python knows; use e.g. utf-8, cp1252, shift_jis, gbk"


def test_train_names_every_undecodable_caption(tiny_models, src, tmp_path):
    (src / "b.txt").write_bytes("naïve".encode("cp1252"))
    (src / "c.txt").write_bytes("naïve".encode("cp1252"))
    c = tiny_models["sd1"]
    emb = api.create_embedding(c, "xqzstyle", "cat", 1, tmp_path / "emb")
    config = TrainConfig(embedding=str(emb), data=str(src), steps=1, width=32, height=32, save_every=0,
                         preview_every=0, log_dir=str(tmp_path / "runs"), plot=False)
    with pytest.raises(TIStudioError) as info:
        train(config, components=c, progress=False)
    assert str(info.value) == (f"2 caption file(s) in {src} are not utf-8 text: b.txt, c.txt; re-save them as UTF-8, "
                               "or let `tistudio preprocess SRC DST --caption-encoding ENC` (e.g. cp1252) "
                               "write UTF-8 copies")


def test_check_reports_undecodable_captions_as_unusable(src, tmp_path, capsys):
    (src / "b.txt").write_bytes("naïve".encode("cp1252"))
    assert main(["check", str(src), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    (finding,) = [f for f in report["findings"] if f["code"] == "caption-encoding"]
    assert finding["level"] == "error" and finding["files"] == ["b.txt"]
    assert finding["message"].startswith("1 caption files are not UTF-8 text and train refuses them")
    assert report["usable"] is False and report["captioned"] == 1  # b's caption is not counted as one
    assert not [f for f in report["findings"] if f["code"] == "uncaptioned" and "b.png" in f["files"]]
