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
from tistudio.train.session import config_for_resume
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


def _vectors(path):
    return load_embedding(path).vectors


def test_every_embedding_gets_its_own_files_and_summary(tiny_models, tmp_path):
    c = tiny_models["sd1"]
    cfg, cat, dog = _two(c, tmp_path, steps=2, save_every=1, val_every=2, val_split=0.5)
    result = train(cfg, components=c, progress=False)
    run, out = tmp_path / "runs" / "cat", tmp_path / "out"
    finals = {"cat": out / "final", "dog": out / "dog"}  # the others go beside --output under their names
    assert sorted(result.outputs) == sorted(f"{finals[n]}{x}" for n in finals for x in (".pt", ".safetensors"))
    for name, stem in finals.items():
        vectors = _vectors(f"{stem}.pt")
        assert torch.equal(vectors[0], _vectors(f"{stem}.safetensors")[0])
        assert torch.equal(vectors[0], _vectors(run / "embeddings" / f"{name}-2.pt")[0])
        assert load_embedding(f"{stem}.pt").step == 2
        start = _vectors(run / "embeddings" / f"{name}-init.safetensors")[0]
        assert torch.equal(start, _vectors(cat if name == "cat" else dog)[0]) and not torch.equal(start, vectors[0])
        assert (run / "embeddings" / f"{name}-1.safetensors").is_file()
        assert (run / "embeddings" / f"{name}-best.pt").is_file() and (stem.parent / f"{stem.name}-best.pt").is_file()
    assert _vectors(dog)[0].shape == (2, 32)  # its own file is untouched: --output takes the finals
    summary = json.loads((run / "summary.json").read_text())
    assert summary["name"] == "cat"
    assert summary["embeddings"] == [
        {"name": "cat", "lr_scale": 1.0, "stop_step": None,
         "final_files": [str(finals["cat"]) + ".pt", str(finals["cat"]) + ".safetensors"]},
        {"name": "dog", "lr_scale": 0.5, "stop_step": None,
         "final_files": [str(finals["dog"]) + ".pt", str(finals["dog"]) + ".safetensors"]}]
    assert len(summary["best_files"]) == 4


def test_without_output_each_embedding_overwrites_its_own_file(tiny_models, tmp_path):
    c = tiny_models["sd1"]
    cfg, cat, dog = _two(c, tmp_path, steps=1, save_every=0, output=None, formats=("a1111-pt",))
    before = _vectors(dog)[0]
    train(cfg, components=c, progress=False)
    assert load_embedding(dog).step == 1 and load_embedding(cat).step == 1
    assert not torch.equal(before, _vectors(dog)[0])


@pytest.mark.parametrize("first_stops", [False, True])
def test_stop_step_freezes_one_embedding_bit_exactly(tiny_models, tmp_path, first_stops):
    """The stopped embedding's vectors (the EMA average too, and under --max-norm) at the end equal
    those at its stop step; the other embedding keeps moving."""
    c = tiny_models["sd1"]
    cfg, cat, dog = _two(c, tmp_path, steps=4, save_every=1, ema=0.5, max_norm=50.0)
    if first_stops:  # the first embedding's own settings: every embedding is a table
        from dataclasses import replace

        cfg = replace(cfg, embedding="", embeddings=(EmbeddingConfig(path=str(cat), stop_step=2),
                                                      EmbeddingConfig(path=str(dog), lr_scale=0.5)))
    else:
        cfg = TrainConfig(**{**cfg.__dict__, "embeddings": (EmbeddingConfig(path=str(dog), lr_scale=0.5,
                                                                           stop_step=2),)})
    stopped, moving = ("cat", "dog") if first_stops else ("dog", "cat")
    train(cfg, components=c, progress=False)
    snaps = tmp_path / "runs" / "cat" / "embeddings"
    at = {k: _vectors(snaps / f"{stopped}-{k}.pt")[0] for k in (1, 2, 3, 4)}
    assert not torch.equal(at[1], at[2])  # it trained up to its stop
    assert torch.equal(at[2], at[3]) and torch.equal(at[2], at[4])
    final = tmp_path / "out" / ("final.pt" if first_stops else "dog.pt")
    assert torch.equal(_vectors(final)[0], at[2])
    other = [_vectors(snaps / f"{moving}-{k}.pt")[0] for k in (2, 3, 4)]
    assert not torch.equal(other[0], other[1]) and not torch.equal(other[1], other[2])
    summary = json.loads((tmp_path / "runs" / "cat" / "summary.json").read_text())
    assert [e["stop_step"] for e in summary["embeddings"]] == ([2, None] if first_stops else [None, 2])


@pytest.mark.parametrize("stop_at", [1, 3])  # before the interruption at step 2, and after it
def test_several_embeddings_resume_bit_exactly(tiny_models, tmp_path, stop_at):
    c = tiny_models["sd1"]
    kw = dict(steps=4, save_every=1, ema=0.5, flip=True, shuffle_tags=True)
    full, _, dog = _two(c, tmp_path / "full", **kw)
    full = TrainConfig(**{**full.__dict__, "embeddings": (EmbeddingConfig(path=str(dog), lr_scale=0.5, stop_step=stop_at),)})
    train(full, components=c, progress=False)
    half, _, dog = _two(c, tmp_path / "half", **kw)
    half = TrainConfig(**{**half.__dict__, "embeddings": (EmbeddingConfig(path=str(dog), lr_scale=0.5, stop_step=stop_at),)})
    stop = StopToken()
    train(half, components=c, progress=False, stop=stop,
          callback=lambda e: stop.stop() if isinstance(e, Progress) and e.step == 2 else None)
    run = tmp_path / "half" / "runs" / "cat"
    assert from_dict(TrainConfig, load_toml(run / "config.toml")) == half  # [[embeddings]] kept in config.toml
    with pytest.raises(TIStudioError, match=r"^--resume .*: --embeddings .*cannot change on resume"):
        config_for_resume(run, {"embeddings": [{"path": str(dog), "stop_step": 4}]},
                          label=lambda f: "--" + f.replace("_", "-"))
    train(half, components=c, progress=False, resume=str(run))
    for name in ("final", "dog"):
        assert torch.equal(_vectors(tmp_path / "full" / "out" / f"{name}.pt")[0],
                           _vectors(tmp_path / "half" / "out" / f"{name}.pt")[0])
    assert torch.equal(_vectors(tmp_path / "half" / "out" / "dog.pt")[0],
                       _vectors(run / "embeddings" / f"dog-{stop_at}.pt")[0])


def test_sdxl_trains_both_encoders_vectors_of_each_embedding(tiny_models, tmp_path):
    c = tiny_models["sdxl"]
    cfg, cat, dog = _two(c, tmp_path, steps=3, save_every=1, formats=("safetensors",),
                         output=str(tmp_path / "out" / "final.safetensors"))
    cfg = TrainConfig(**{**cfg.__dict__, "embeddings": (EmbeddingConfig(path=str(dog), stop_step=1),)})
    train(cfg, components=c, progress=False)
    snaps = tmp_path / "runs" / "cat" / "embeddings"
    for name, file in (("cat", tmp_path / "out" / "final.safetensors"), ("dog", tmp_path / "out" / "dog.safetensors")):
        start, end = _vectors(snaps / f"{name}-init.safetensors"), _vectors(file)
        assert [tuple(v.shape) for v in end] == [tuple(v.shape) for v in start] and len(end) == 2  # clip_l, clip_g
        assert all(not torch.equal(a, b) for a, b in zip(start, end))
    frozen = _vectors(snaps / "dog-1.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(frozen, _vectors(tmp_path / "out" / "dog.safetensors")))


@pytest.mark.slow  # two runs with previews: ~25 s on 2 CPU cores
def test_previews_show_each_embedding(tiny_models, tmp_path):
    from PIL import Image

    c = tiny_models["sd1"]
    prompts = tmp_path / "p.txt"
    prompts.write_text("a [name] on grass\ncat and dog together\n")
    cfg, _, _ = _two(c, tmp_path, steps=1, save_every=0, preview_every=1, preview_steps=2)
    train(cfg, components=c, progress=False)
    single = Image.open(tmp_path / "runs" / "cat" / "images" / "cat-1.png")
    assert single.size == (128, 64)  # one cell per embedding
    cells = single.info["parameters"].split("\n\n")
    assert [p.splitlines()[0] for p in cells] == ["a photo of cat", "a photo of dog"]  # the template's first line
    cfg = TrainConfig(**{**cfg.__dict__, "preview_prompts": str(prompts), "log_dir": str(tmp_path / "runs2")})
    train(cfg, components=c, progress=False)
    grid = Image.open(tmp_path / "runs2" / "cat" / "previews" / "cat-1.png")
    texts = [p.splitlines()[0] for p in grid.info["parameters"].split("\n\n")]
    assert texts == ["a cat on grass", "a dog on grass", "cat and dog together"]


def test_cli_embedding_repeats_and_toml_tables(tmp_path):
    from tistudio.cli.main import build_parser
    from tistudio.cli.train import build_config

    toml = tmp_path / "run.toml"
    toml.write_text('embedding = "cat.pt"\n[[embeddings]]\npath = "dog.pt"\nlr_scale = 0.25\nstop_step = 100\n'
                    '[[concept]]\npath = "dogs"\nembedding = "dog"\n')
    parse = build_parser().parse_args
    cfg = build_config(parse(["train", "--config", str(toml)]))
    assert cfg.embedding_tables == (EmbeddingConfig(path="cat.pt"), EmbeddingConfig("dog.pt", 0.25, 100))
    assert cfg.concept[0].embedding == "dog" and cfg.trained_file == "cat.pt"
    many = build_config(parse(["train", "--config", str(toml), "--embedding", "a.pt", "--embedding", "b.pt"]))
    assert many.embedding_tables == (EmbeddingConfig(path="a.pt"), EmbeddingConfig(path="b.pt"))
    assert overrides_from(parse(["train", "--embedding", "a.pt"])) == {"embedding": "a.pt"}
    only_tables = from_dict(TrainConfig, {"embeddings": [{"path": "x.pt", "stop_step": 5}, {"path": "y.pt"}]})
    assert only_tables.trained_file == "x.pt" and only_tables.embedding_tables[0].stop_step == 5
    toml.write_text('[[embeddings]]\npath = "dog.pt"\nstop = 3\n')
    with pytest.raises(TIStudioError, match=r"\[\[embeddings\]\] #1: unknown option 'stop'"):
        build_config(parse(["train", "--config", str(toml)]))


@pytest.mark.parametrize("kw, message", [
    (dict(method="dreamartist"), r"^\[\[embeddings\]\] b.pt: several embeddings train with --method ti only"),
    (dict(method="hypernetwork", hypernetwork="h.pt", embedding=""), r"several embeddings train with --method ti "),
    (dict(embeddings=[{"path": "b.pt"}, {"path": "b.pt"}]), r"^\[\[embeddings\]\] b.pt: the file is given twice"),
    (dict(embeddings=[{"path": "b.pt", "stop_step": -1}]), r"\[\[embeddings\]\] b.pt: stop_step = -1: use 0"),
    (dict(embeddings=[{"path": "b.pt", "lr_scale": -1.0}]), r"lr_scale = -1.0: use 0 or more"),
    (dict(embeddings=[{"lr_scale": 2.0}]), r"\[\[embeddings\]\]: path is required"),
])
def test_config_refuses_what_several_embeddings_cannot_do(kw, message):
    with pytest.raises(TIStudioError, match=message):
        from_dict(TrainConfig, {"embedding": "a.pt", "data": "d", "embeddings": [{"path": "b.pt"}], **kw})


def test_setup_refuses_clashing_embeddings_before_training(tiny_models, tmp_path):
    from dataclasses import replace

    from tistudio.embedding.formats import save_embedding

    c = tiny_models["sd1"]
    cfg, cat, dog = _two(c, tmp_path, steps=1)
    twin = api.create_embedding(c, "cat", "dog", 1, tmp_path / "twin")
    with pytest.raises(TIStudioError, match=r"its trigger 'cat' is also .*cat.pt's; each embedding of a run needs"):
        train(replace(cfg, embeddings=(EmbeddingConfig(str(twin)),)), components=c, progress=False)
    save_embedding(replace(load_embedding(dog), step=7), dog, "a1111-pt")
    with pytest.raises(TIStudioError, match=r"dog.pt: stored at step 7, .*cat.pt at step 0; embeddings trained"):
        train(cfg, components=c, progress=False)
    save_embedding(replace(load_embedding(dog), step=0), dog, "a1111-pt")
    with pytest.raises(TIStudioError, match=r"two embeddings of this run would both be saved as .*dog.pt"):
        train(replace(cfg, output=str(tmp_path / "out" / "dog.pt")), components=c, progress=False)
    bad = replace(cfg, concept=(ConceptConfig(path=cfg.concept[0].path, embedding="dgo"),))
    with pytest.raises(TIStudioError, match=r"embedding = 'dgo' is not one of this run's embeddings \(cat, dog\)"):
        train(bad, components=c, progress=False)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.pt"))  # nothing trained


def test_web_ui_resume_keeps_several_embeddings_and_says_so(tmp_path, tiny_model_dirs):
    """The form holds one embedding; a stored run of several is resumed with all of them, the page
    says so, and a further embedding outside the root is refused like any path."""
    from tistudio.config import dump_toml
    from tistudio.webui.app import make_context
    from tistudio.webui.forms import train_fields
    from tistudio.webui.safety import PathGuard
    from tistudio.webui.train_resume import config, form_values, several_note

    (tmp_path / "root" / "data").mkdir(parents=True)
    guard = PathGuard.at(tmp_path / "root")
    ctx = make_context(guard.root, str(tiny_model_dirs["sd1"]))
    for name in ("cat.pt", "dog.pt"):
        (guard.root / name).write_bytes(b"x")
    run = guard.root / "runs" / "cat"
    run.mkdir(parents=True)
    stored = TrainConfig(embedding=str(guard.root / "cat.pt"), data=str(guard.root / "data"), steps=3,
                         embeddings=(EmbeddingConfig(str(guard.root / "dog.pt"), stop_step=2),),
                         log_dir=str(guard.root / "runs"), model=TrainConfig().model.__class__(model=str(tiny_model_dirs["sd1"])))
    (run / "config.toml").write_text(dump_toml(stored))
    specs = train_fields()
    values = dict(zip([s.key for s in specs], form_values(specs, stored, ctx.guard.show)))
    values.update(steps=6)
    _, cfg, diff = config(ctx, specs, "runs/cat", list(values.values()))
    assert diff == [("steps", 3, 6)] and cfg.embeddings == stored.embeddings
    assert several_note(ctx, cfg) == (" This run trains 2 embeddings (`cat.pt`, `dog.pt`); the form has room for one, "
                                      "and **Resume** continues all of them as its config.toml has them (read-only here).")
    assert several_note(ctx, TrainConfig(embedding="cat.pt")) == ""
    outside = TrainConfig(**{**stored.__dict__, "embeddings": (EmbeddingConfig(str(tmp_path / "dog.pt")),)})
    (run / "config.toml").write_text(dump_toml(outside))
    with pytest.raises(TIStudioError, match="outside the web UI root"):
        config(ctx, specs, "runs/cat", list(values.values()))


@pytest.mark.parametrize("split", [0.0, 0.5])
def test_validation_prompts_name_each_images_embedding(tiny_models, tmp_path, monkeypatch, split):
    """Held out or not, a validation image's prompts carry its concept's trigger, as in training."""
    from tistudio.train import report

    built = []
    plain = report.ValidationSet.build
    monkeypatch.setattr(report.ValidationSet, "build",
                        lambda *a, **k: built.append(plain(*a, **k)) or built[-1])
    c = tiny_models["sd1"]
    cfg, _, _ = _two(c, tmp_path, steps=1, save_every=0, val_every=1, val_split=split, val_timesteps=1)
    train(cfg, components=c, progress=False)
    (vset,) = built
    owners = [("b" if i >= (1 if split else 2) else "a") for i in vset.indices]  # a's images come first
    texts = [p.text for p in vset.prompts]
    assert sorted(set(owners)) == ["a", "b"]
    assert [("dog" if o == "b" else "cat") for o in owners] == [t.split()[-1] for t in texts]


@pytest.mark.parametrize("caption, dog_moves", [("with dog", True), ("with a ball", False)])
def test_a_caption_may_name_another_trigger_literally(tiny_models, tmp_path, caption, dog_moves):
    """Every trigger in a prompt gets its vectors: dog, named only in the captions of cat's images,
    trains; named nowhere, it gets no gradient and stays bit-identical (the optimizer skips it)."""
    c = tiny_models["sd1"]
    a = write_shapes_dataset(tmp_path / "a", n=2, seed=1)
    cat = api.create_embedding(c, "cat", "cat", 1, tmp_path / "emb")
    dog = api.create_embedding(c, "dog", "dog", 1, tmp_path / "emb")
    template = tmp_path / "t.txt"
    template.write_text("a photo of [name], [filewords]\n")
    cfg = quick_config(cat, "", tmp_path, steps=2, save_every=0, template=str(template),
                       embeddings=(EmbeddingConfig(str(dog)),),
                       concept=(ConceptConfig(path=str(a), caption_source="fixed", caption=caption),))
    train(cfg, components=c, progress=False)
    assert not torch.equal(_vectors(cat)[0], _vectors(tmp_path / "out" / "final.pt")[0])
    assert torch.equal(_vectors(dog)[0], _vectors(tmp_path / "out" / "dog.pt")[0]) != dog_moves


def test_cli_trains_two_embeddings(cli, tiny_models, tiny_model_dirs, tmp_path):
    c = tiny_models["sd1"]
    a = write_shapes_dataset(tmp_path / "a", n=2, seed=1)
    cat = api.create_embedding(c, "cat", "cat", 1, tmp_path / "emb")
    dog = api.create_embedding(c, "dog", "dog", 1, tmp_path / "emb")
    r = cli("train", "--model", tiny_model_dirs["sd1"], "--embedding", cat, "--embedding", dog, "--data", a,
            "--steps", "1", "--width", "64", "--height", "64", "--save-every", "0", "--preview-every", "0",
            "--no-plot", "--template", "subject", "--log-dir", tmp_path / "runs", "--format", "safetensors",
            "--quiet")
    assert r.returncode == 0, r.stderr
    assert f"saved {tmp_path / 'emb' / 'cat.safetensors'}" in r.stdout
    assert f"saved {tmp_path / 'emb' / 'dog.safetensors'}" in r.stdout
    saved = load_toml(tmp_path / "runs" / "cat" / "config.toml")
    assert saved["embedding"] == str(cat) and saved["embeddings"] == [{"path": str(dog), "lr_scale": 1.0, "stop_step": 0}]
