"""The shipped toy model: a normal SD1 diffusers folder, small, loaded by the normal loader, and
(slow) it draws what its captions say. Plus the training recipe end to end at a tiny size."""
import json

import numpy as np
import pytest
import torch

from tistudio.toy import default_model_path


def test_shipped_model_is_a_small_sd1_folder_that_load_model_reads():
    from tistudio.models.load import load_model

    folder = default_model_path()
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    assert size <= 25 * 2**20
    assert json.loads((folder / "model_index.json").read_text())["_class_name"] == "StableDiffusionPipeline"
    assert not list(folder.rglob("*.bin"))     # safetensors only
    c = load_model(folder)
    assert c.family.name == "sd1" and c.prediction == "epsilon"
    assert c.vae_factor == 4 and c.unet.config.sample_size * c.vae_factor == 32
    assert c.widths == (48,)
    assert c.text_encoders[0].get_input_embeddings().weight.shape[0] == 49408
    # The trained text encoder tells words apart: different colours give different conditioning.
    ids = c.tokenizer(["a photo of a red star", "a photo of a blue star"], padding="max_length",
                      max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        h = c.text_encoders[0](ids).last_hidden_state
    assert not torch.allclose(h[0], h[1], atol=1e-3)


def test_shipped_model_was_trained_on_the_palette_the_classifier_names():
    from tistudio.toy.scenes import COLOURS

    saved = json.loads((default_model_path() / "toy_training.json").read_text())
    assert {name: tuple(rgb) for name, rgb in saved["palette"].items()} == COLOURS


@pytest.mark.slow
def test_shipped_model_follows_its_captions(toy_model):
    from tistudio.toy.evaluate import caption_accuracy

    acc = caption_accuracy(toy_model, 128)
    assert acc["colour"] >= 0.9 and acc["shape"] >= 0.9


@pytest.mark.slow
def test_init_word_alone_rarely_draws_a_held_out_concept(toy_model):
    from tistudio.toy.concepts import parse_concept
    from tistudio.toy.evaluate import init_word_rate

    assert init_word_rate(toy_model, parse_concept("teal star"), 64) <= 0.2


def test_train_base_recipe_writes_a_loadable_folder_with_its_history(tmp_path):
    from tistudio.models.load import load_model
    from tistudio.toy.base import BaseRecipe, train_base
    from tistudio.toy.model import ToyArch
    from tistudio.toy.scenes import COLOURS

    recipe = BaseRecipe(arch=ToyArch(text_width=16, unet_channels=(16, 32), vae_channels=(16, 16, 16)),
                        pool=16, vae_steps=2, vae_batch=4, steps=3, batch=4, warmup=1, eval_every=3,
                        eval_n=2, eval_sampler_steps=2)
    lines = []
    report = train_base(recipe, tmp_path / "m", log=lines.append)
    c = load_model(tmp_path / "m")
    assert c.widths == (16,) and c.vae_factor == 4
    saved = json.loads((tmp_path / "m" / "toy_training.json").read_text())
    assert saved["history"][-1]["step"] == 3 and saved["recipe"]["steps"] == 3
    assert saved["palette"]["orange"] == list(COLOURS["orange"])   # the palette it was trained on
    assert 0 <= report["final"]["colour"] <= 1
    assert any(line.startswith("eval step 3") for line in lines)
    # The scaling factor was measured so latents have unit variance.
    assert c.vae_scale != pytest.approx(0.18215)

    # Training on from a saved model keeps its VAE (weights and scaling factor) and its vocabulary.
    from dataclasses import replace

    train_base(replace(recipe, init_from=str(tmp_path / "m"), steps=2, eval_every=2), tmp_path / "m2",
               log=lines.append)
    c2 = load_model(tmp_path / "m2")
    assert c2.vae_scale == c.vae_scale
    assert all(torch.equal(a, b) for a, b in zip(c.vae.parameters(), c2.vae.parameters()))
    assert not torch.equal(c.unet.conv_in.weight, c2.unet.conv_in.weight)


@pytest.fixture
def toy_cli(cli):
    return lambda *args: cli("toy", *args)


def test_cli_lists_held_out_concepts(toy_cli):
    out = toy_cli("concepts")
    assert out.returncode == 0
    for spec in ("teal star", "pink triangle", "orange circle", "purple square"):
        assert spec in out.stdout


def test_cli_renders_a_captioned_concept_dataset(toy_cli, tmp_path):
    from PIL import Image

    from tistudio.toy.classifier import classify

    out = toy_cli("render", "--concept", "teal star", "--n", "5", "--out", str(tmp_path / "d"))
    assert out.returncode == 0, out.stderr
    pngs = sorted((tmp_path / "d").glob("*.png"))
    assert len(pngs) == 5
    for png in pngs:
        assert classify(Image.open(png)).matches("teal", "star")
        caption = png.with_suffix(".txt").read_text()
        assert "star" in caption and "teal" not in caption
    assert len({np.asarray(Image.open(p)).tobytes() for p in pngs}) == 5


def test_cli_rejects_a_bad_concept_in_one_line(toy_cli, tmp_path):
    out = toy_cli("render", "--concept", "teal hexagon", "--out", str(tmp_path / "d"))
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "--concept" in out.stderr
    assert not (tmp_path / "d").exists()
