"""Bounds checked before any work (memory floor, vectors, names, templates, schedules), the warnings
that always come (learning rate, vector norms, a name the model or the captions already use) and the
model's own default size."""
import dataclasses

import pytest
from PIL import Image

from tistudio import api
from tistudio.cli.main import main
from tistudio.config import TrainConfig
from tistudio.data.templates import load_template
from tistudio.errors import TIStudioError
from tistudio.events import Message
from tistudio.models.footprint import floor_bytes
from tistudio.train.advice import lr_warning
from tistudio.train.health import vocabulary_medians
from tistudio.train.run import train
from tistudio.schedules import parse_lr


def one_line_error(capsys, code) -> str:
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line and "it/s]" not in line]
    assert code == 2 and len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def cfg(emb, data, tmp_path, **kw):
    base = dict(embedding=str(emb), data=str(data), steps=2, width=64, height=64, save_every=0, preview_every=0,
                log_dir=str(tmp_path / "runs"), lr="0.005", template="none", plot=False,
                output=str(tmp_path / "out" / "final.pt"))
    return TrainConfig(**{**base, **kw})


def messages(c, config):
    seen = []
    result = train(config, components=c, callback=seen.append, progress=False)
    return result, [f"{m.level}: {m.text}" for m in seen if isinstance(m, Message)]


# -- memory ------------------------------------------------------------------------------------
def test_an_impossible_resolution_is_refused_with_the_figure(tiny_model_dirs, tiny_models, dataset, tmp_path, capsys):
    emb = api.create_embedding(tiny_models["sd1"], "tok", "cat", 1, tmp_path / "emb")
    line = one_line_error(capsys, main(["train", "--model", str(tiny_model_dirs["sd1"]), "--embedding", str(emb),
                                        "--data", str(dataset), "--width", "100000", "--height", "100000",
                                        "--log-dir", str(tmp_path / "runs"), "--quiet"]))
    assert line.startswith("error: --width/--height 100000x100000 needs at least ") and " GiB but " in line
    assert line.endswith("use a smaller size (the model's own is 64x64) or batch")
    assert not (tmp_path / "runs").exists()  # refused before any image was read or file written
    line = one_line_error(capsys, main(["generate", "--model", str(tiny_model_dirs["sd1"]), "--prompt", "x",
                                        "--width", "100000", "--height", "100000", "--out", str(tmp_path / "img")]))
    assert "100000x100000 needs at least" in line and not list((tmp_path / "img").iterdir())


def test_memory_floor_scales_with_pixels_and_batch(tiny_models):
    c = tiny_models["sd1"]
    one = floor_bytes(c, 64, 64, 1, training=True)
    assert floor_bytes(c, 128, 128, 1, training=True) == 4 * one
    assert floor_bytes(c, 64, 64, 3, training=True) == 3 * one
    assert floor_bytes(c, 64, 64, 1, training=False) < one
    # Tiny VAE (8 channels at full size): (3 + 3*8) fp32 values per pixel, plus the UNet's share.
    assert 64 * 64 * 4 * 27 < one < 64 * 64 * 4 * 27 * 1.1


# -- create: vectors and names -----------------------------------------------------------------
def test_create_refuses_zero_vectors_before_loading(tmp_path, capsys):
    missing = str(tmp_path / "no-model")  # never opened: the checks come first
    line = one_line_error(capsys, main(["create", "tok", "--model", missing, "--vectors", "0"]))
    assert line == "error: --vectors 0: use 1 to 75 vectors per token"
    line = one_line_error(capsys, main(["create", "tok", "--model", missing, "--method", "dreamartist",
                                        "--neg-vectors", "0"]))
    assert line == "error: --neg-vectors 0: use 1 to 75 vectors per token"


def test_create_refuses_a_name_with_a_file_extension(tmp_path, capsys):
    line = one_line_error(capsys, main(["create", "foo.pt", "--model", str(tmp_path / "m"), "--out", str(tmp_path)]))
    assert line == ("error: embedding name 'foo.pt' ends in .pt; give the name without an extension ('foo'): "
                    "the file extension comes from --format")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(TIStudioError, match="ends in .safetensors"):
        api.create_embedding("unused", "style.SAFETENSORS")
    assert "letters, digits" in one_line_error(capsys, main(["create", "a/b", "--model", "m"]))


def test_create_warns_on_a_vocabulary_word(tiny_model_dirs, tmp_path, capsys):
    assert main(["create", "star", "--model", str(tiny_model_dirs["sd1"]), "--out", str(tmp_path)]) == 0
    assert "warning: embedding name 'star' is a word the model already knows" in capsys.readouterr().out
    assert main(["create", "xqzstyle", "--model", str(tiny_model_dirs["sd1"]), "--out", str(tmp_path)]) == 0
    assert "warning" not in capsys.readouterr().out


# -- templates and schedules -------------------------------------------------------------------
def test_unknown_template_placeholders_are_refused(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("a photo of [name]\na painting of [nmae], [filewords]\n")
    with pytest.raises(TIStudioError, match=r"line 2: unknown placeholder \[nmae\]; did you mean \[name\]\? "
                                            r"templates know only \[name\] and \[filewords\]"):
        load_template(path)
    path.write_text("[name], [Filewords]\n")  # A1111 replaces only the lower-case spelling
    with pytest.raises(TIStudioError, match=r"unknown placeholder \[Filewords\]; did you mean \[filewords\]"):
        load_template(path)
    path.write_text("[name] by [filewords], 4k\n")
    assert load_template(path) == ["[name] by [filewords], 4k"]


def test_schedule_order_is_checked_past_the_last_step():
    with pytest.raises(TIStudioError, match=r"'0.01:100': end steps must be positive and increasing "
                                            r"\(the entry before ends at 5000\)"):
        parse_lr("0.1:5000, 0.01:100", 3000)
    with pytest.raises(TIStudioError, match="is not a number"):
        parse_lr("0.1:5000, fast:6000", 3000)
    assert parse_lr("0.1:5000, 0.01:6000", 3000).entries == ((0.1, 3000),)


# -- warnings at the start and during training ---------------------------------------------------
def test_huge_lr_warns_at_start_and_the_norms_warn_without_validation(tiny_models, dataset, tmp_path):
    c = tiny_models["sd1"]
    emb = api.create_embedding(c, "xqzstyle", "cat", 1, tmp_path / "emb")
    result, said = messages(c, cfg(emb, dataset, tmp_path, lr="1e9"))
    assert result.reason == "completed"
    lr = [m for m in said if "--lr 1e+09" in m]
    assert lr and lr[0].startswith("warning: --lr 1e+09: one step can move a vector by about ")
    norms = [m for m in said if "the vocabulary's median token norm; the embedding may drown" in m]
    assert len(norms) == 1 and norms[0].startswith("warning: step 1: a vector's norm is ")  # once per onset
    import json
    summary = json.loads((tmp_path / "runs" / "xqzstyle" / "summary.json").read_text())
    assert summary["max_norm_ratio"] > 1e6  # recorded without --val-every too


def test_ordinary_lr_gives_no_warning(tiny_models, dataset, tmp_path):
    c = tiny_models["sd1"]
    assert lr_warning(parse_lr("0.005", 100), c, vocabulary_medians(c)) is None
    assert lr_warning(parse_lr("0.05:200, 0.005", 1000), c, vocabulary_medians(c)) is None  # the guide's warm-up
    emb = api.create_embedding(c, "xqzstyle", "cat", 1, tmp_path / "emb")
    _, said = messages(c, cfg(emb, dataset, tmp_path))
    assert not [m for m in said if m.startswith("warning")], said


def test_train_warns_when_the_name_is_a_word_and_in_the_captions(tiny_models, dataset, tmp_path):
    c = tiny_models["sd1"]
    emb = api.create_embedding(c, "square", "cat", 1, tmp_path / "emb")  # captions: "a red square", ...
    _, said = messages(c, cfg(emb, dataset, tmp_path, steps=1))
    assert any(m.startswith("warning: embedding name 'square' is a word the model already knows") for m in said)
    assert "warning: 4 of 4 captions contain the embedding name 'square' (e.g. 'a red square')" in " ".join(said)


# -- the model's own size ----------------------------------------------------------------------
def test_default_size_comes_from_the_models_config(tiny_models, toy_model_dir, tmp_path):
    c = tiny_models["sd1"]
    assert c.resolution == 64  # sample_size 8 x VAE factor 8
    toy = api.load_model(str(toy_model_dir))
    assert toy.resolution == 32 and toy.family.resolution == 512  # sample_size 8 x factor 4, not SD1's 512
    no_size = dataclasses.replace(c, unet=type("U", (), {"config": type("C", (), {"sample_size": None})()})())
    assert no_size.resolution == 512  # the family's, only when the config has none
    from tistudio.generate.sample import GenerateOptions

    (path,) = api.generate(toy, GenerateOptions(prompt="a star", steps=1), out_dir=tmp_path)
    assert Image.open(path).size == (32, 32)


def test_training_defaults_to_the_models_size(tiny_models, dataset, tmp_path):
    c = tiny_models["sd1"]
    emb = api.create_embedding(c, "xqzstyle", "cat", 1, tmp_path / "emb")
    train(cfg(emb, dataset, tmp_path, width=None, height=None, steps=1, preview_every=1, preview_steps=1),
          components=c, progress=False)
    assert "width" not in (tmp_path / "runs" / "xqzstyle" / "config.toml").read_text()  # not frozen into the run
    # The preview is drawn at the training size: the tiny model's own 64, not SD1's 512.
    assert Image.open(tmp_path / "runs" / "xqzstyle" / "images" / "xqzstyle-1.png").size == (64, 64)
