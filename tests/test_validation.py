"""Validation loss, held-out images, best checkpoint, early stopping, overfitting and norm health."""
import csv
import json
import shutil

import pytest
import torch

from tistudio import api
from tistudio.config import TrainConfig
from tistudio.embedding.formats import load_embedding
from tistudio.errors import TIStudioError
from tistudio.events import Message
from tistudio.train import validation
from tistudio.train.validator import Evaluation, Validator
from tistudio.train.health import vocabulary_medians
from tistudio.train.run import train
from tistudio.train.session import prepare


def config(emb, data, tmp_path, **kw):
    base = dict(embedding=str(emb), data=str(data), steps=4, width=64, height=64, save_every=0,
                preview_every=0, log_dir=str(tmp_path / "runs"), lr="0.05", template="subject_filewords",
                output=str(tmp_path / "out" / "final.pt"), plot=False, val_timesteps=3)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture
def emb(tiny_models, tmp_path):
    return api.create_embedding(tiny_models["sd1"], "tok", "cat", 2, tmp_path / "emb")


def test_validation_loss_is_identical_for_identical_vectors_and_moves_with_them(tiny_models, dataset, tmp_path, emb):
    s, _ = prepare(config(emb, dataset, tmp_path, val_every=1), components=tiny_models["sd1"], progress=False)
    validator = s.hooks[0]
    first = validator.loss()
    rebuilt = validation.ValidationSet.build(s.cfg, s.c, s.cache, "tok", s.prompts.lines, held_out=False)
    assert len(rebuilt) == 4 * 3 and rebuilt.timesteps[:3].tolist() == [166, 500, 833]
    again = rebuilt.loss(s.objective, s.c, s.device, s.cfg.batch_size, (s.height, s.width))
    assert first == validator.loss() == again == validator.initial_val
    with torch.no_grad():
        p = s.objective.embeddings[0].params[0]
        p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(0)) * 5)
    moved = validator.loss()
    # A random tiny UNet barely listens to its context, so the change is small, but any change is the
    # vectors': everything else is fixed.
    assert moved != first and moved == validator.loss(), (first, moved)


def test_held_out_images_are_never_trained_on(tiny_models, dataset, tmp_path, emb):
    messages = []
    s, _ = prepare(config(emb, dataset, tmp_path, val_every=1, val_split=0.5), components=tiny_models["sd1"],
                   progress=False, callback=lambda e: messages.append(e.text) if isinstance(e, Message) else None)
    trained = {r.path.name for r in s.cache.records}
    assert len(trained) == 2
    assert any(m.startswith("validation: 6 fixed (image, timestep, noise) triples from held-out images")
               for m in messages), messages  # 2 images x 3 timesteps
    s.lock.release()  # prepare() holds the run folder until train() ends; this test prepares it again
    # --val-data: a copy of a training image (another name, same bytes) is removed from training.
    val_dir = tmp_path / "val"
    val_dir.mkdir()
    first = sorted(dataset.glob("*.png"))[0]
    shutil.copy(first, val_dir / "copy.png")
    s, _ = prepare(config(emb, dataset, tmp_path, val_every=1, val_data=str(val_dir)),
                   components=tiny_models["sd1"], progress=False)
    assert first.name not in {r.path.name for r in s.cache.records} and len(s.cache) == 3


def fake_losses(monkeypatch, values):
    """The validation loss returns `values` in turn (the first one is the pre-training value)."""
    it = iter(values)
    monkeypatch.setattr(validation.ValidationSet, "loss", lambda self, *args: next(it))


def test_early_stop_on_a_plateau_keeps_the_best_vectors(tiny_models, dataset, tmp_path, emb, monkeypatch):
    fake_losses(monkeypatch, [1.0, 0.9, 0.8, 0.85, 0.86, 0.87, 0.88])
    events = []
    cfg = config(emb, dataset, tmp_path, steps=10, val_every=1, early_stop=2, save_every=1)
    result = train(cfg, components=tiny_models["sd1"], progress=False, callback=events.append)
    assert (result.step, result.reason) == (4, "early-stopped")
    run = tmp_path / "runs" / "tok"
    at_best = load_embedding(run / "embeddings" / "tok-2.pt").vectors[0]
    for path in (run / "embeddings" / "tok-best.pt", run / "embeddings" / "tok-best.safetensors",
                 tmp_path / "out" / "final-best.pt"):
        assert torch.equal(load_embedding(path).vectors[0], at_best), path
    assert not torch.equal(load_embedding(tmp_path / "out" / "final.pt").vectors[0], at_best)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["reason"] == "early-stopped" and summary["best_step"] == 2
    assert summary["best_val_loss"] == 0.8 and summary["initial_val_loss"] == 1.0
    assert "no improvement in 2 evaluations after step 2" in summary["stopped_because"]
    rows = list(csv.DictReader(open(run / "loss.csv")))
    assert [r["val_loss"] for r in rows] == ["0.900000", "0.800000", "0.850000", "0.860000"]
    assert any(isinstance(e, Message) and "early stop at step 4" in e.text for e in events)


def test_overfitting_is_flagged_once_when_validation_rises_while_training_falls():
    ev = Validator.__new__(Validator)
    messages = []
    ev.names, ev.overfit_steps, ev.history, ev.say = ["tok"], [], [], messages.append
    for step, val, ema in [(10, 0.5, 0.9), (20, 0.4, 0.8), (30, 0.45, 0.7), (40, 0.5, 0.6), (50, 0.6, 0.5)]:
        ev.history.append(Evaluation(step, {"val_loss": val, "loss_ema": ema}))
        ev.best = min(ev.history, key=lambda h: h.val_loss)
        ev._check_overfit()
    assert ev.overfit_steps == [40, 50]
    assert len(messages) == 1 and messages[0].level == "warning"
    assert "step 40: overfitting" in messages[0].text and "best so far is step 20" in messages[0].text


def test_max_norm_caps_vectors_at_a_multiple_of_the_vocabulary_median(tiny_models, dataset, tmp_path, emb):
    c = tiny_models["sd1"]
    median = vocabulary_medians(c)[0]
    train(config(emb, dataset, tmp_path, steps=3, lr="0.5", max_norm=0.5), components=c, progress=False)
    norms = load_embedding(tmp_path / "out" / "final.pt").vectors[0].norm(dim=1)
    assert (norms <= 0.5 * median * (1 + 1e-5)).all(), (norms, median)


@pytest.mark.parametrize("kw, message", [
    (dict(early_stop=3), "--early-stop works at each evaluation: add --val-every"),
    (dict(val_every=5, val_split=0.2, val_data="x"), "one or the other"),
    (dict(val_every=5, val_split=1.0), "--val-split 1.0"),
    (dict(max_norm=0.0), "--max-norm"),
])
def test_bad_monitoring_options(kw, message):
    with pytest.raises(TIStudioError, match=message):
        TrainConfig(**kw)


def test_val_split_that_leaves_nothing_to_train_is_refused(tiny_models, tmp_path, emb):
    from shapes_dataset import write_shapes_dataset

    data = write_shapes_dataset(tmp_path / "one", n=1)
    with pytest.raises(TIStudioError, match="leaves no training images"):
        prepare(config(emb, data, tmp_path, val_every=1, val_split=0.5), components=tiny_models["sd1"],
                progress=False)


def test_resume_continues_validation_and_best_exactly(tiny_models, dataset, tmp_path, emb):
    c = tiny_models["sd1"]
    kw = dict(val_every=1, lr="0.5", val_timesteps=1)  # exactness needs a validation at every step, not many timesteps
    train(config(emb, dataset, tmp_path / "a", steps=4, **kw), components=c, progress=False)
    train(config(emb, dataset, tmp_path / "b", steps=2, **kw), components=c, progress=False)
    run_b = tmp_path / "b" / "runs" / "tok"
    train(config(emb, dataset, tmp_path / "b", steps=4, **kw), components=c, progress=False, resume=str(run_b))
    run_a = tmp_path / "a" / "runs" / "tok"
    cols = ("step", "loss_ema", "val_loss")
    a, b = ([tuple(r[k] for k in cols) for r in csv.DictReader(open(r / "loss.csv"))] for r in (run_a, run_b))
    assert a == b and len(a) == 4
    sa, sb = (json.loads((r / "summary.json").read_text()) for r in (run_a, run_b))
    for key in ("best_step", "initial_val_loss", "evaluations"):
        assert sa[key] == sb[key], key
    assert sa["best_val_loss"] == pytest.approx(sb["best_val_loss"], abs=1e-6)
