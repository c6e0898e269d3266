"""The training core's contracts: a read-only Setup, a TrainState whose state_dict is state.pt's
layout, every objective an Objective, and --max-norm as a training rule applied with the step."""
import dataclasses

import pytest
import torch

from tistudio import api
from tistudio.config import TrainConfig
from tistudio.embedding.formats import load_embedding
from tistudio.train.health import vocabulary_medians
from tistudio.train.objectives.base import Objective
from tistudio.train.run import train
from tistudio.train.session import prepare


def config(tmp_path, data, **kw):
    base = dict(data=str(data), steps=2, width=64, height=64, save_every=0, preview_every=0,
                log_dir=str(tmp_path / "runs"), lr="0.01", template="subject_filewords",
                output=str(tmp_path / "out" / "final.pt"), plot=False)
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("method", ["ti", "dreamartist", "hypernetwork"])
def test_every_objective_is_an_objective_and_the_setup_is_read_only(tiny_models, dataset, tmp_path, method):
    c = tiny_models["sd1"]
    if method == "ti":
        kw = dict(embedding=str(api.create_embedding(c, "tok", "cat", 1, tmp_path / "emb")))
    elif method == "dreamartist":
        pos, _ = api.create_dreamartist_pair(c, "tok", "cat", 1, "", 1, tmp_path / "emb")
        kw = dict(embedding=str(pos), method="dreamartist")
    else:
        kw = dict(hypernetwork=str(api.create_hypernetwork(c, "hn", out_dir=tmp_path / "hn")), method="hypernetwork")
    setup, state = prepare(config(tmp_path, dataset, **kw), components=c, progress=False)
    try:
        assert isinstance(setup.objective, Objective)
        assert list(state.trained) == list(setup.objective.embeddings) and state.step == 0
        with pytest.raises(dataclasses.FrozenInstanceError):
            setup.cfg = None
        # The layout state.pt has always had, so a run saved before this split still resumes.
        saved = state.state_dict()
        assert set(saved) == {"step", "vectors", "optimizer", "scaler", "torch_rng", "extra"}
        assert set(saved["extra"]) >= {"recipe", "guard"}
        assert list(saved["vectors"]) == [e.name for e in setup.objective.embeddings]
    finally:
        setup.lock.release()


def test_max_norm_holds_for_the_ema_average_too(tiny_models, dataset, tmp_path):
    """--max-norm caps the vectors right after the optimizer step, so the EMA average (the saved
    file) is an average of capped vectors and never passes the cap either."""
    c = tiny_models["sd1"]
    emb = api.create_embedding(c, "tok", "cat", 2, tmp_path / "emb")
    median = vocabulary_medians(c)[0]
    cap = 1.5
    assert (load_embedding(emb).vectors[0].norm(dim=1) < cap * median).all()  # the start is inside the cap
    train(config(tmp_path, dataset, embedding=str(emb), steps=3, lr="0.5", max_norm=cap, ema=0.5),
          components=c, progress=False)
    norms = load_embedding(tmp_path / "out" / "final.pt").vectors[0].norm(dim=1)
    assert (norms <= cap * median * (1 + 1e-5)).all(), (norms, cap * median)
    assert torch.isfinite(norms).all()
