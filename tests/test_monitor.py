"""Loss plot, TensorBoard event files, `tistudio runs`, and CLIP / toy fidelity scores."""
import csv
import json

import pytest
from PIL import Image

from tistudio import api
from tistudio.config import TrainConfig
from tistudio.train.monitor import loss_figure, write_loss_plot
from tistudio.train.run import train


def config(emb, data, tmp_path, **kw):
    base = dict(embedding=str(emb), data=str(data), steps=4, width=64, height=64, save_every=0,
                preview_every=0, log_dir=str(tmp_path / "runs"), lr="0.05", template="subject_filewords",
                output=str(tmp_path / "out" / "final.pt"), val_timesteps=2, val_images=2)
    base.update(kw)
    return TrainConfig(**base)


def test_loss_plot_draws_the_logged_values(tmp_path):
    records = [{"step": s, "loss": 1.0 / s, "loss_ema": 0.9 / s, "learn_rate": 0.01,
                "val_loss": 0.5 / s if s % 2 == 0 else None} for s in range(1, 7)]
    fig = loss_figure(records, initial_val=0.7, best_step=6)
    lines = {line.get_label(): line for ax in fig.axes for line in ax.get_lines()}
    assert list(lines["training loss"].get_ydata()) == [1.0 / s for s in range(1, 7)]
    assert list(lines["moving average"].get_ydata()) == [0.9 / s for s in range(1, 7)]
    assert list(lines["validation loss"].get_xdata()) == [0, 2, 4, 6]
    assert list(lines["validation loss"].get_ydata()) == [0.7, 0.25, 0.125, 0.5 / 6]
    assert list(lines["best (step 6)"].get_ydata()) == [0.5 / 6]
    assert list(lines["learning rate"].get_ydata()) == [0.01] * 6
    path = write_loss_plot(tmp_path / "loss.png", records)
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size == (800, 450)
        assert len(set(img.convert("RGB").getdata())) > 10  # something was drawn


def test_tensorboard_and_summary_hold_the_logged_values(cli, tiny_models, dataset, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    c = tiny_models["sd1"]
    emb = api.create_embedding(c, "tok", "cat", 2, tmp_path / "emb")
    train(config(emb, dataset, tmp_path, val_every=2, tensorboard=True, preview_every=2, preview_steps=1),
          components=c, progress=False)
    run = tmp_path / "runs" / "tok"
    rows = list(csv.DictReader(open(run / "loss.csv")))
    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    train_loss = acc.Scalars("loss/train")
    assert [e.step for e in train_loss] == [1, 2, 3, 4]
    assert [e.value for e in train_loss] == pytest.approx([float(r["loss"]) for r in rows], abs=1e-5)
    assert [e.value for e in acc.Scalars("learning_rate")] == pytest.approx([0.05] * 4)
    val = acc.Scalars("eval/val_loss")
    logged = [(int(r["step"]), float(r["val_loss"])) for r in rows if r["val_loss"]]
    assert [e.step for e in val] == [s for s, _ in logged] == [2, 4]
    assert [e.value for e in val] == pytest.approx([v for _, v in logged], abs=1e-5)
    assert len(acc.Scalars("norm_ratio/tok/encoder0/vector1")) == 2
    assert [e.step for e in acc.Images("preview")] == [2, 4]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["reason"] == "completed" and summary["steps"] == 4 and summary["evaluations"] == 2
    assert summary["best_val_loss"] == pytest.approx(min(float(r["val_loss"]) for r in rows if r["val_loss"]), abs=1e-6)
    assert Image.open(run / "loss.png").size == (800, 450)
    evals = list(csv.DictReader(open(run / "evaluations.csv")))
    assert [e["step"] for e in evals] == ["2", "4"] and float(evals[0]["max_norm_ratio"]) > 0

    out = cli("runs", tmp_path / "runs")
    assert out.returncode == 0, out.stderr
    line = next(x for x in out.stdout.splitlines() if x.startswith("tok "))
    assert line.split()[1:4] == ["4", str(summary["best_step"]), f"{summary['best_val_loss']:.5f}"]
    assert line.endswith("completed")


def tiny_clip(folder):
    from transformers import CLIPConfig, CLIPModel

    import torch
    torch.manual_seed(0)
    cfg = CLIPConfig(text_config=dict(vocab_size=49408, hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                                      num_attention_heads=2, max_position_embeddings=77, projection_dim=16),
                     vision_config=dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=37,
                                        num_hidden_layers=1, num_attention_heads=2, projection_dim=16),
                     projection_dim=16)
    CLIPModel(cfg).save_pretrained(folder)
    return folder


def test_clip_and_toy_fidelity_scores_are_logged_at_each_evaluation(tiny_models, dataset, tmp_path):
    c = tiny_models["sd1"]
    emb = api.create_embedding(c, "tok", "cat", 1, tmp_path / "emb")
    clip = tiny_clip(tmp_path / "clip")
    # Through the API, which loads the toy world's scorer (training itself never imports it).
    api.train(config(emb, dataset, tmp_path, steps=2, val_every=2, eval_clip=str(clip), eval_toy="red square",
                     eval_samples=2, preview_steps=1), components=c, progress=False)
    evals = list(csv.DictReader(open(tmp_path / "runs" / "tok" / "evaluations.csv")))
    assert len(evals) == 1
    for key in ("clip_image", "clip_text"):
        assert -1.0 <= float(evals[0][key]) <= 1.0
    for key in ("toy_colour", "toy_shape", "toy_fidelity"):
        assert float(evals[0][key]) in (0.0, 0.5, 1.0)


def test_eval_clip_without_a_model_folder_is_a_one_line_error(tiny_models, dataset, tmp_path):
    from tistudio.errors import TIStudioError

    c = tiny_models["sd1"]
    emb = api.create_embedding(c, "tok", "cat", 1, tmp_path / "emb")
    with pytest.raises(TIStudioError, match="--eval-clip .*no config.json"):
        train(config(emb, dataset, tmp_path, val_every=2, eval_clip=str(tmp_path)), components=c, progress=False)


def test_clip_images_are_resized_centre_cropped_and_normalised_as_clip_expects(tmp_path):
    """CLIPImageProcessor, built from the model's image size: shorter side to 32, centre crop, the
    OpenAI mean and std."""
    from types import SimpleNamespace

    from tistudio.train.fidelity import ClipScorer

    ref = tmp_path / "ref.png"
    Image.new("RGB", (40, 40), (128, 128, 128)).save(ref)
    records = [SimpleNamespace(path=ref)]
    s = SimpleNamespace(cache=SimpleNamespace(records=records, images=records),
                        concepts=SimpleNamespace(training=lambda rs: rs))
    scorer = ClipScorer(s, str(tiny_clip(tmp_path / "clip")))
    wide = Image.new("RGB", (96, 48), (255, 0, 0))
    wide.paste((0, 0, 255), (0, 0, 24, 48))  # the left quarter, cut off by the centre crop
    pixels = scorer._pixels([wide])
    assert pixels.shape == (1, 3, 32, 32)
    mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
    expected = [(v - m) / sd for v, m, sd in zip((1.0, 0.0, 0.0), mean, std)]
    assert pixels[0, :, :, 1:-1].reshape(3, -1).mean(dim=1).tolist() == pytest.approx(expected, abs=1e-3)
