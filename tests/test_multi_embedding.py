"""Several embeddings in one run (docs/multi-embedding.md) on the tiny models: each concept's [name] is
its embedding's trigger, every embedding gets its own files, its lr_scale reaches the optimizer, its
stop_step freezes it bit-exactly while the others move on, and the run resumes bit-exactly."""
import json

import pytest
import torch

from tistudio import api
from tistudio.cli.train import overrides_from
from tistudio.config import ConceptConfig, EmbeddingConfig, TrainConfig, from_dict, load_toml
from tistudio.embedding.formats import load_embedding
from tistudio.errors import TIStudioError
from tistudio.events import Progress, StopToken
from tistudio.train.run import train
from shapes_dataset import write_shapes_dataset

from run_config import quick_config, spied_run


def _two(c, tmp_path, **kw):
    """A run of `cat` (the --data concept) and `dog` (its own concept, half the learning rate)."""
    a = write_shapes_dataset(tmp_path / "a", n=2, seed=1)
    b = write_shapes_dataset(tmp_path / "b", n=2, seed=2)
    cat = api.create_embedding(c, "cat", "cat", 1, tmp_path / "emb")
    dog = api.create_embedding(c, "dog", "dog", 2, tmp_path / "emb")
    base = dict(embeddings=(EmbeddingConfig(path=str(dog), lr_scale=0.5),), template="subject",
                concept=(ConceptConfig(path=str(b), embedding="dog"),), batch_size=2, formats=("a1111-pt", "safetensors"))
    base.update(kw)
    return quick_config(cat, a, tmp_path, **base), cat, dog


def test_each_concept_trains_its_own_embedding(tiny_models, tmp_path):
    c = tiny_models["sd1"]
    cfg, cat, dog = _two(c, tmp_path, steps=3, save_every=2)
    seen = []
    s, _ = spied_run(cfg, c, lambda mb, loss: seen.append((list(mb.indices), [p.text for p in mb.prompts])))
    assert [e.name for e in s.objective.embeddings] == ["cat", "dog"]
    texts = {i: t for indices, prompts in seen for i, t in zip(indices, prompts)}
    assert texts and all(("dog" in t) == (i >= 2) and ("cat" in t) == (i < 2) for i, t in texts.items())


def test_lr_scale_reaches_the_optimizer(tiny_models, tmp_path):
    from tistudio.train.session import prepare

    cfg, _, _ = _two(tiny_models["sd1"], tmp_path, steps=2)
    s, st = prepare(cfg, components=tiny_models["sd1"], progress=False)
    try:
        assert [g["lr_weight"] for g in st.optimizer.param_groups] == [1.0, 0.5]
        assert [len(g["params"]) for g in st.optimizer.param_groups] == [1, 1]
    finally:
        s.lock.release()
