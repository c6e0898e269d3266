"""Training with concepts on the tiny model: the logged loss is each sample's loss times its concept's
weight (x --prior-loss-weight for reg images), concept templates reach the prompts, and a run of two
concepts with every caption extra resumes bit-exactly."""

import pytest
import torch

from tistudio import api
from tistudio.config import ConceptConfig, RecipeConfig, TrainConfig, from_dict, load_toml
from tistudio.embedding.formats import load_embedding
from tistudio.errors import TIStudioError
from shapes_dataset import write_shapes_dataset
from tistudio.train.run import train
from tistudio.train.session import config_for_resume

from run_config import quick_config, spied_run


def _spied_run(cfg, c):
    """Train `cfg`, recording each micro-batch's record indices, per-sample losses and prompts."""
    seen = []
    s, logged = spied_run(cfg, c, lambda mb, per_sample: seen.append(
        (list(mb.indices), per_sample.detach().clone(), [p.text for p in mb.prompts])))
    return s, seen, logged


@pytest.mark.parametrize("prior, b_weight", [(0.3, 1.0), (0.0, 2.5)])
def test_logged_loss_weights_each_sample_by_its_concept(tiny_models, tmp_path, prior, b_weight):
    c = tiny_models["sd1"]
    a = write_shapes_dataset(tmp_path / "a", n=3, seed=1)
    b = write_shapes_dataset(tmp_path / "b", n=2, seed=2)
    reg = write_shapes_dataset(tmp_path / "reg", n=2, seed=3)
    template = tmp_path / "b.txt"
    template.write_text("painting of [name]\n")
    path = api.create_embedding(c, "tok", "cat", 1, tmp_path / "emb")
    concepts = (ConceptConfig(path=str(b), repeats=2, loss_weight=b_weight, template=str(template)),
                ConceptConfig(path=str(reg), is_reg=True))
    # the concepts' weights alone: no SNR weighting (min-SNR's is tested in test_recipe.py)
    cfg = quick_config(path, a, tmp_path, steps=2, save_every=0, batch_size=4, grad_accum=2, concept=concepts,
                       prior_loss_weight=prior, recipe=RecipeConfig(loss_weighting="none"))
    s, seen, logged = _spied_run(cfg, c)
    assert len(s.concepts) == (3 + 2 * 2) * 2  # 7 training draws and as many reg draws per epoch
    weights = {0: 1.0, 1: 1.0, 2: 1.0, 3: b_weight, 4: b_weight, 5: prior, 6: prior}
    expected = []
    for step in range(2):
        total = 0.0
        for indices, per_sample, _ in seen[2 * step: 2 * step + 2]:
            total += sum(weights[i] * float(v) for i, v in zip(indices, per_sample)) / 8
        expected.append(total)
    assert logged == pytest.approx(expected, rel=1e-5)
    drawn = [i for indices, _, _ in seen for i in indices]
    assert {3, 4} & set(drawn) and {5, 6} & set(drawn)  # both extra concepts were trained on
    for indices, _, texts in seen:
        for i, text in zip(indices, texts):
            assert (text == "painting of tok") == (i in (3, 4))  # the concept's own template


def test_two_concepts_resume_bit_exactly(tiny_models, tmp_path):
    c = tiny_models["sd1"]
    a = write_shapes_dataset(tmp_path / "a", n=3, seed=1)
    reg = write_shapes_dataset(tmp_path / "reg", n=2, seed=3)
    path = api.create_embedding(c, "tok", "cat", 2, tmp_path / "emb")
    kw = dict(concept=(ConceptConfig(path=str(reg), is_reg=True, repeats=2),), prior_loss_weight=0.5,
              flip=True, batch_size=2, shuffle_tags=True, keep_tokens=1, caption_prefix="pre", caption_dropout=0.3,
              tag_dropout=0.2, template="subject_filewords", latent_sampling="random")
    train(quick_config(path, a, tmp_path / "full", steps=4, **kw), components=c, progress=False)
    half = quick_config(path, a, tmp_path / "half", steps=4, **kw)
    from tistudio.events import Progress, StopToken

    stop = StopToken()
    train(half, components=c, progress=False, stop=stop,
          callback=lambda e: stop.stop() if isinstance(e, Progress) and e.step == 2 else None)
    run = tmp_path / "half" / "runs" / "tok"
    assert from_dict(TrainConfig, load_toml(run / "config.toml")) == half  # [[concept]] kept in config.toml
    train(half, components=c, progress=False, resume=str(run))
    full = load_embedding(tmp_path / "full" / "out" / "final.pt").vectors[0]
    resumed = load_embedding(tmp_path / "half" / "out" / "final.pt").vectors[0]
    assert torch.equal(full, resumed)
    with pytest.raises(TIStudioError, match=r"--prior-loss-weight 0.9 \(the run has 0.5\).*cannot change on resume"):
        config_for_resume(run, {"prior_loss_weight": 0.9}, label=lambda f: "--" + f.replace("_", "-"))


def test_cli_trains_several_folders_and_reg_images(tiny_model_dirs, tiny_models, tmp_path, capsys):
    from tistudio.cli.main import main

    a = write_shapes_dataset(tmp_path / "a", n=2, seed=1)
    b = write_shapes_dataset(tmp_path / "b", n=1, seed=2)
    reg = write_shapes_dataset(tmp_path / "reg", n=1, seed=3)
    emb = api.create_embedding(tiny_models["sd1"], "tok", "cat", 1, tmp_path / "emb")
    assert main(["train", "--model", str(tiny_model_dirs["sd1"]), "--embedding", str(emb), "--data", str(a),
                 "--data", str(b), "--reg-data", str(reg), "--prior-loss-weight", "0.5", "--steps", "1",
                 "--width", "64", "--height", "64", "--save-every", "0", "--preview-every", "0", "--no-plot",
                 "--template", "none", "--log-dir", str(tmp_path / "runs"), "--output", str(tmp_path / "out.pt"),
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert (f"info: concepts: {a}: 2 images x1 = 2 draws, weight 1; {b}: 1 images x1 = 1 draws, weight 1; "
            f"{reg}: 1 images x1 = 3 draws (reg), weight 0.5; an epoch is 6 draws") in out
    saved = load_toml(tmp_path / "runs" / "tok" / "config.toml")
    assert saved["data"] == str(a) and saved["concept"] == [
        {"path": str(b), "repeats": 1, "loss_weight": 1.0, "caption_source": "auto", "caption": "", "template": "",
         "is_reg": False, "embedding": ""},
        {"path": str(reg), "repeats": 1, "loss_weight": 1.0, "caption_source": "auto", "caption": "", "template": "",
         "is_reg": True, "embedding": ""}]
