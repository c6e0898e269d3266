"""Web UI rules without a browser: path confinement, bind/auth refusal, upload validation, the form
built from TrainConfig, the job registry (background runs, interrupt, a second run), runs reading."""
from __future__ import annotations

import time

import pytest
from PIL import Image

from tistudio.config import TrainConfig
from tistudio.errors import TIStudioError
from tistudio.events import Finished, Progress
from tistudio.webui.forms import build_train_config, train_fields
from tistudio.webui.jobs import JobRegistry, ModelHolder
from tistudio.webui.safety import PathGuard, check_bind, check_image, parse_auth, store_uploads
from tistudio.webui.tab_train_output import status_text


@pytest.fixture
def guard(tmp_path):
    root = tmp_path / "root"
    (root / "data").mkdir(parents=True)
    return PathGuard.at(root)


def test_relative_and_inside_paths_resolve_under_the_root(guard):
    assert guard.resolve("data", "Dataset folder", "dir") == guard.root / "data"
    assert guard.resolve(str(guard.root / "data" / "new"), "Out") == guard.root / "data" / "new"
    assert guard.resolve("data/../data", "Dataset folder") == guard.root / "data"


@pytest.mark.parametrize("value", ["..", "../x", "/etc/passwd", "data/../../x", "~"])
def test_paths_outside_the_root_are_refused(guard, value):
    with pytest.raises(TIStudioError, match="outside the web UI root") as err:
        guard.resolve(value, "Dataset folder")
    assert str(err.value).startswith(f"Dataset folder {value}:") and "\n" not in str(err.value)


def test_a_symlink_pointing_out_of_the_root_is_refused(guard, tmp_path):
    (tmp_path / "secret").mkdir()
    (guard.root / "link").symlink_to(tmp_path / "secret")
    with pytest.raises(TIStudioError, match="outside the web UI root"):
        guard.resolve("link/file.txt", "Embedding file")


def test_trusted_model_may_lie_outside_and_missing_paths_are_named(tmp_path):
    model, root = tmp_path / "model", tmp_path / "root"
    model.mkdir()
    root.mkdir()
    guard = PathGuard.at(root, trusted=(model,))
    assert guard.resolve(str(model), "Model", "any") == model.resolve()
    with pytest.raises(TIStudioError, match="no such folder"):
        guard.resolve("nothere", "Dataset folder", "dir")
    with pytest.raises(TIStudioError, match="empty"):
        guard.resolve("  ", "Dataset folder")


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.5", "::", "example.org"])
def test_serving_beyond_loopback_needs_auth(host):
    with pytest.raises(TIStudioError, match="--auth USER:PASS or --auth-file"):
        check_bind(host, None)
    check_bind(host, [("u", "p")])


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_needs_no_auth(host):
    check_bind(host, None)


def test_auth_parsing(tmp_path):
    assert parse_auth("ann:pa:ss", None) == [("ann", "pa:ss")]
    file = tmp_path / "users"
    file.write_text("# team\nann:one\n\nbob:two\n")
    assert parse_auth(None, str(file)) == [("ann", "one"), ("bob", "two")]
    for bad in ("ann", ":pw", "ann:"):
        with pytest.raises(TIStudioError, match="USER:PASS"):
            parse_auth(bad, None)
    with pytest.raises(TIStudioError, match="not both"):
        parse_auth("a:b", str(file))


def test_uploads_keep_images_and_reject_the_rest(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    Image.new("RGB", (20, 10), (1, 2, 3)).save(src / "good.png")
    Image.new("RGB", (8, 8)).save(src / "photo.jpg")
    (src / "fake.png").write_text("hello")
    Image.new("RGB", (64, 64)).save(src / "cut.png")
    (src / "cut.png").write_bytes((src / "cut.png").read_bytes()[:60])
    stored, rejected = store_uploads([src / n for n in ("good.png", "photo.jpg", "fake.png", "cut.png")],
                                     tmp_path / "dest")
    assert sorted(p.name for p in stored) == ["good.png", "photo.jpg"]
    assert Image.open(tmp_path / "dest" / "good.png").getpixel((0, 0)) == (1, 2, 3)
    assert rejected[0] == "fake.png: not an image" and rejected[1].startswith("cut.png: ")
    assert sorted(p.name for p in (tmp_path / "dest").iterdir()) == ["good.png", "photo.jpg"]
    Image.new("L", (100, 100)).save(src / "big.png")
    assert "larger than" in check_image(src / "big.png", max_pixels=5000)


def _values(specs, **overrides):
    values = []
    for s in specs:
        key = s.key.replace(".", "__")
        if key in overrides:
            values.append(overrides[key])
        elif s.kind == "multi":
            values.append(list(s.default))
        elif s.default is None:
            values.append(0 if s.kind in ("int", "float") else "")
        else:
            values.append(s.default)
    return values


def test_form_covers_every_config_field_and_builds_the_config(guard):
    specs = train_fields()
    keys = {s.key for s in specs}
    from dataclasses import fields
    for f in fields(TrainConfig):
        assert f.name in ("model", "concept", "embeddings") or f.name in keys or any(k.startswith(f.name + ".") for k in keys), \
            f.name
    (guard.root / "emb.pt").write_bytes(b"x")
    cfg = build_train_config(specs, _values(specs, embedding="emb.pt", data="data", steps=12.0, width=0,
                                            height=64, lr="0.01:5, 0.002"),
                             guard, "/models/m", family="sd1")
    assert cfg.embedding == str(guard.root / "emb.pt") and cfg.data == str(guard.root / "data")
    assert (cfg.steps, cfg.width, cfg.height, cfg.lr) == (12, None, 64, "0.01:5, 0.002")
    assert cfg.model.model == "/models/m" and cfg.model.family == "sd1" and cfg.filename_join == " "
    assert cfg.log_dir == str(guard.root / "runs")


@pytest.mark.parametrize("overrides, message", [
    (dict(data="../elsewhere"), "Dataset folder ../elsewhere: outside the web UI root"),
    (dict(data="missing"), "Dataset folder missing: no such folder"),
    (dict(width=60), "--width 60"),
    (dict(steps=2.5), "Max steps 2.5: use a whole number"),
    (dict(embedding=""), "Embedding file: empty"),
])
def test_form_errors_name_the_field(guard, overrides, message):
    (guard.root / "emb.pt").write_bytes(b"x")
    specs = train_fields()
    kw = dict(embedding="emb.pt", data="data")
    kw.update(overrides)
    with pytest.raises(TIStudioError, match=message.replace("(", r"\(").replace(".", r"\.")):
        build_train_config(specs, _values(specs, **kw), guard, "/m")


class FakeModel:
    """Stands in for Components where the server's ModelHolder is asked for a model."""


def wait_for(predicate, seconds=30):
    end = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


def test_registry_trains_in_a_child_process_interrupts_and_runs_again(tmp_path):
    """Each run is a process of its own (its own GIL, as `tistudio train`), with the torch thread
    count a fresh process gets; Interrupt reaches it; the next run starts after the first ended."""
    import os

    import torch

    import webui_fakes

    loads = []
    models = ModelHolder(loader=lambda path, **kw: loads.append(path) or FakeModel())
    models.get("/m")
    jobs = JobRegistry(models, train=webui_fakes.steps)
    cfg = TrainConfig(embedding=str(tmp_path / "tok.pt"), data="d", steps=5, log_dir=str(tmp_path / "runs"))
    job = jobs.start(cfg)
    assert job.process.pid != os.getpid() and models.loaded is None  # the run loads its own model
    wait_for(lambda: job.view().previews)
    with pytest.raises(TIStudioError, match="already going"):
        jobs.start(cfg)
    assert job.view().messages[0].text == f"pid {job.process.pid} threads {torch.get_num_threads()} resume None " \
                                          "components None"
    jobs.interrupt()
    assert job.view().stopping and "stopping after this step" in status_text(job.view())
    wait_for(lambda: job.view().status == "finished")
    v = job.view()
    assert v.finished.reason == "interrupted" and [p[0] for p in v.points] == [1, 2]
    assert v.run_dir == str(tmp_path / "runs" / "tok") and v.name == "tok"
    assert not job.process.is_alive() and job.process.exitcode == 0
    second = jobs.start(cfg, resume=v.run_dir)
    wait_for(lambda: second.view().status == "finished")
    assert second.view().finished.reason == "completed" and second.view().last.step == 5
    assert second.view().messages[0].text.endswith(f"resume {tmp_path / 'runs' / 'tok'} components None")
    assert second.process.pid != job.process.pid
    assert jobs.latest() is second and jobs.running() is None and loads == ["/m"]


def test_the_page_reads_points_without_copying_them(tmp_path):
    from tistudio.webui.jobs import TrainingJob

    job = TrainingJob(1, TrainConfig(), None, str(tmp_path), "tok")
    job.record([Progress(s, 9, 0.5, 0.01, 0, s - 1, 0.01, 0.0) for s in (1, 2)])
    v = job.view()
    job.record([Progress(3, 9, 0.4, 0.01, 0, 2, 0.01, 0.0)])
    assert len(v.points) == 2 and list(v.points) == [(1, 0.5, 0.01), (2, 0.5, 0.01)] and v.points[-1][0] == 2
    assert v.points[:1] == [(1, 0.5, 0.01)] and len(job.view().points) == 3
    with pytest.raises(IndexError):
        v.points[2]


@pytest.mark.parametrize("fake, error", [
    ("fails", "--data x: does not exist"),
    ("crashes", "the training process ended unexpectedly (exit code 3)"),
])
def test_a_failing_run_reports_its_error(tmp_path, capfd, fake, error):
    import webui_fakes

    jobs = JobRegistry(ModelHolder(loader=lambda path, **kw: FakeModel()), train=getattr(webui_fakes, fake))
    job = jobs.start(TrainConfig(embedding="e.pt", steps=1))
    wait_for(lambda: job.view().status == "failed")
    assert job.view().error == error and jobs.running() is None
    if fake == "fails":  # one line in the server log (the child's stderr is the server's), no traceback
        assert capfd.readouterr().err == "webui: run 1 failed: --data x: does not exist\n"


@pytest.mark.slow
def test_real_training_in_the_registry_then_resume(tiny_model_dirs, dataset, tmp_path):
    """The real api.train in the child process on the tiny model (paced: 0.2 s a step): interrupt
    after the first step the page sees, resume to the end."""
    import webui_fakes
    from tistudio import api
    from tistudio.config import ModelConfig
    from tistudio.embedding.formats import load_embedding

    model = str(tiny_model_dirs["sd1"])
    emb = api.create_embedding(model, "tok", "cat", 1, tmp_path / "emb")
    jobs = JobRegistry(train=webui_fakes.paced)
    cfg = TrainConfig(model=ModelConfig(model=model), embedding=str(emb), data=str(dataset), steps=12, width=64,
                      height=64, save_every=0, preview_every=0, log_dir=str(tmp_path / "runs"),
                      template="subject_filewords")
    job = jobs.start(cfg)
    wait_for(lambda: job.view().last is not None or job.view().status != "running", 120)
    jobs.interrupt()
    wait_for(lambda: job.view().status != "running", 60)
    first = job.view()
    assert first.status == "finished" and first.finished.reason == "interrupted", first.error
    assert first.last.step < 12 and first.finished.step == first.last.step
    again = jobs.start(cfg, resume=first.run_dir)
    wait_for(lambda: again.view().status != "running", 120)
    assert again.view().finished.reason == "completed", again.view().error
    assert load_embedding(emb).step == 12
    assert [p[0] for p in again.view().points] == list(range(first.last.step + 1, 13))


def test_runs_are_listed_with_best_step_and_exported(tmp_path, tiny_models):
    from tistudio import api
    from tistudio.embedding.formats import load_embedding
    from tistudio.webui import runs

    run = tmp_path / "runs" / "tok"
    (run / "embeddings").mkdir(parents=True)
    (run / "config.toml").write_text("steps = 3\n")
    (run / "loss.csv").write_text("step,epoch,epoch_step,loss,learn_rate,loss_ema,val_loss\n"
                                  "1,0,0,0.5,0.01,0.5,\n2,0,1,0.4,0.01,0.45,0.30\n3,0,2,0.2,0.01,0.3,0.35\n")
    api.create_embedding(tiny_models["sd1"], "tok-2", "cat", 1, run / "embeddings")
    (tmp_path / "runs" / "notarun").mkdir()
    [info] = runs.list_runs(tmp_path / "runs")
    assert (info.name, info.steps, info.final_loss, info.best_step, info.best_loss) == ("tok", 3, 0.3, 2, 0.30)
    points = runs.chart_rows({"tok": runs.loss_rows(run)})
    assert [(p["step"], p["series"]) for p in points] == [(1, "tok"), (2, "tok"), (3, "tok"), (2, "tok (val)"),
                                                         (3, "tok (val)")]
    out = runs.export(run / "embeddings" / "tok-2.pt", "safetensors", tmp_path / "dl")
    assert out.name == "tok-2.safetensors"
    assert load_embedding(out).vectors[0].equal(load_embedding(run / "embeddings" / "tok-2.pt").vectors[0])


def test_the_train_form_trains_a_hypernetwork_without_an_embedding(guard):
    """Train hypernetwork is the Train tab with method "hypernetwork" and the file in its own box."""
    (guard.root / "hn.pt").write_bytes(b"x")
    specs = train_fields()
    assert [s.key for s in specs if s.section == "run"] == ["embedding", "data", "method", "hypernetwork"]
    assert specs[0].section == "run"  # shown first
    cfg = build_train_config(specs, _values(specs, embedding="", hypernetwork="hn.pt", method="hypernetwork",
                                            data="data"), guard, "/m")
    assert (cfg.method, cfg.hypernetwork, cfg.embedding) == ("hypernetwork", str(guard.root / "hn.pt"), "")
    # Boxes left at the embedding defaults take the hypernetwork run's own, as on the command line.
    assert (cfg.lr, cfg.template) == ("0.00001", "hypernetwork")
    cfg = build_train_config(specs, _values(specs, embedding="", hypernetwork="hn.pt", method="hypernetwork",
                                            data="data", lr="0.0001", template="none"), guard, "/m")
    assert (cfg.lr, cfg.template) == ("0.0001", "none")
    with pytest.raises(TIStudioError, match="Embedding file: empty"):
        build_train_config(specs, _values(specs, embedding="", data="data"), guard, "/m")


def test_create_hypernetwork_tab_writes_the_file_and_reports_compatibility(tmp_path, tiny_models, tiny_model_dirs):
    from tistudio.hypernetwork import format as hn_format
    from tistudio.hypernetwork.apply import attention_widths
    from tistudio.webui.app import make_context
    from tistudio.webui.tab_create_hypernetwork import create

    model = str(tiny_model_dirs["sd1"])
    ctx = make_context(tmp_path, model=model)
    widths = [str(w) for w in attention_widths(tiny_models["sd1"].unet)]
    text = create(ctx, model, "", "styled", widths, "1, 1.5, 1", "mish", False, False, "", "xavier",
                  "hns", False)
    hn = hn_format.load(tmp_path / "hns" / "styled.pt")
    assert hn.structure.layer_structure == (1.0, 1.5, 1.0) and hn.structure.weight_init == "XavierUniform"
    assert "Created `hns/styled.pt`" in text and "ComfyUI: loads" in text
    with pytest.raises(TIStudioError, match="already exists"):
        create(ctx, model, "", "styled", widths, "1, 2, 1", "linear", False, False, "", "normal", "hns", False)


def test_saved_embeddings_show_which_programs_load_them(tmp_path, tiny_models):
    import torch

    from tistudio.embedding.embedding import Embedding
    from tistudio.embedding.formats import save_embedding, save_png_embedding
    from tistudio.webui import runs

    pt = save_embedding(Embedding("tok", (torch.randn(2, 768),)), tmp_path / "tok.pt")
    text = runs.compat_summary(pt, lambda p: p.name if p.is_file() else "embeddings")
    assert text == ("`tok.pt` loads in: A1111 ✓ `tok` · Forge ✓ `tok` · ComfyUI ✓ `embedding:tok` · kohya ✓ "
                    "`tok (tokens tok, tok1…)` · InvokeAI ✓ `<tok>` · diffusers ✓ `tok`")
    png = save_png_embedding(Embedding("tok-500", (torch.randn(2, 768),)), tmp_path / "tok-500.png")
    lines = runs.compat_summary(png, lambda p: p.name if p.is_file() else "embeddings").splitlines()
    assert lines[0].startswith("`tok-500.png` loads in: A1111 ✓ `tok-500` · Forge ✓ `tok-500` · ComfyUI ✗")
    assert lines[1] == ("- ComfyUI (refused): it reads only .safetensors/.pt/.bin tensor files, never embeddings "
                        "in images (not fixable in the image). Fix: `tistudio convert embeddings/tok-500.png "
                        "embeddings/tok-500.safetensors`")
    assert len(lines) == 5  # ComfyUI, kohya, InvokeAI, diffusers refuse it


def test_create_tab_and_runs_tab_report_the_compat_summary(tmp_path, tiny_models, tiny_model_dirs):
    from tistudio.webui import tab_create, tab_runs
    from tistudio.webui.context import Context

    model = tiny_model_dirs["sd1"]
    holder = ModelHolder(loader=lambda *args, **kwargs: tiny_models["sd1"])
    (tmp_path / "root").mkdir()
    ctx = Context(PathGuard.at(tmp_path / "root", trusted=(model,)), JobRegistry(holder), str(model), tmp_path)
    text = tab_create.create(ctx, str(model), None, "tok", "cat", 1, 0, "*", "embeddings", "a1111-pt", False)
    assert "Created `embeddings/tok.pt`" in text
    assert "`embeddings/tok.pt` loads in: A1111 ✓ `tok` · Forge ✓ `tok` · ComfyUI ✓ `embedding:tok`" in text
    assert "- InvokeAI (refused): its probe knows widths 768/1024/1280, not 32" in text  # the tiny model's width
    run = tmp_path / "root" / "runs" / "tok"
    (run / "embeddings").mkdir(parents=True)
    (tmp_path / "root" / "embeddings" / "tok.pt").rename(run / "embeddings" / "tok-2.pt")
    shown = tab_runs.compat(ctx, "runs", "tok", "tok-2.pt")
    assert shown.startswith("`runs/tok/embeddings/tok-2.pt` loads in: A1111 ✓ `tok-2`")
    assert tab_runs.compat(ctx, "runs", "tok", None) == ""


def test_train_status_lists_the_compat_summary_of_each_output(tmp_path):
    import torch

    from tistudio.embedding.embedding import Embedding
    from tistudio.embedding.formats import save_embedding
    from tistudio.webui.jobs import JobView
    from tistudio.webui.tab_train_output import saved_text, status_text

    out = save_embedding(Embedding("tok", (torch.randn(1, 768),)), tmp_path / "tok.safetensors")
    view = JobView(id=1, name="tok", status="finished", cfg=None, resume=None, points=(),
                   last=Progress(3, 3, 0.1, 0.01, 0, 2, 0.5, 0.0), previews=(), saved=(), messages=(),
                   finished=Finished(3, "completed", (str(out), str(tmp_path / "gone.pt"))), error=None,
                   run_dir=str(tmp_path))
    text = saved_text(view)
    assert f"`{out}` loads in: A1111 ✓ `tok`" in text and "gone.pt` loads in" not in text
    assert status_text(view).count("\n") == 0  # the status stays one line above the chart


def test_the_train_status_shows_latent_caching_with_its_eta(tmp_path):
    import webui_fakes

    jobs = JobRegistry(ModelHolder(loader=lambda path, **kw: FakeModel()), train=webui_fakes.caches)
    job = jobs.start(TrainConfig(embedding=str(tmp_path / "tok.pt"), steps=1))
    wait_for(lambda: job.view().caching is not None)
    assert "caching latents: **3/8** images | ETA 0:00:10" in status_text(job.view())
    jobs.interrupt()
    wait_for(lambda: job.view().status == "finished")


def test_page_errors_log_one_line_and_name_the_checkbox(capsys):
    gr = pytest.importorskip("gradio")
    from tistudio.webui.context import SAY_OVERWRITE, user_errors

    def create():
        raise TIStudioError("embeddings/tok.pt already exists; pass --overwrite to replace it or choose another name")
    with pytest.raises(gr.Error) as caught:
        user_errors(create, SAY_OVERWRITE)()
    assert caught.value.message == ("embeddings/tok.pt already exists; tick “Overwrite an existing file” to replace "
                                    "it or choose another name")
    assert capsys.readouterr().err == f"webui: error: {caught.value.message}\n"  # one line, no traceback


def test_the_live_chart_draws_loss_moving_average_and_validation(tmp_path):
    from tistudio.train.outputs import EMA_BETA
    from tistudio.webui import tab_train_output
    from tistudio.webui.jobs import JobView

    (tmp_path / "loss.csv").write_text("step,epoch,epoch_step,loss,learn_rate,loss_ema,val_loss\n"
                                       "1,0,0,0.5,0.01,0.5,\n2,0,1,0.3,0.01,0.48,0.40\n")
    live = tuple((step, 0.1, 0.01) for step in range(3, 2503))
    view = JobView(id=1, name="tok", status="running", cfg=None, resume=str(tmp_path), points=live, last=None,
                   previews=(), saved=(), messages=(), finished=None, error=None, run_dir=str(tmp_path))
    frame = tab_train_output.chart(view)
    by = {name: rows for name, rows in frame.groupby("series")}
    assert set(by) == {"training", "moving average", "validation"}
    assert by["validation"][["step", "loss"]].values.tolist() == [[2, 0.40]]
    assert len(by["training"]) <= tab_train_output.MAX_POINTS and by["training"]["step"].iloc[-1] == 2502
    ema = by["moving average"].set_index("step")["loss"]
    at3 = EMA_BETA * 0.48 + (1 - EMA_BETA) * 0.1  # continues loss.csv's average (0.48 at step 2)
    assert ema[1] == 0.5 and ema[4] == pytest.approx(EMA_BETA * at3 + (1 - EMA_BETA) * 0.1)  # every 3rd step kept


def test_a_stored_config_round_trips_through_the_form(guard):
    from tistudio.webui.train_resume import form_values

    (guard.root / "emb.pt").write_bytes(b"x")
    cfg = TrainConfig(embedding=str(guard.root / "emb.pt"), data=str(guard.root / "data"),
                      log_dir=str(guard.root / "runs"), lr="0.02:2, 0.01", steps=7, width=64, template="subject",
                      filename_regex=r"\d+", formats=("safetensors",), method="dreamartist",
                      dreamartist=TrainConfig().dreamartist.__class__(cfg="2-4:cos", reconstruction=True))
    # The profile-decided switches keep all three states: None (auto), on and off.
    cfg = TrainConfig(**{**cfg.__dict__, "model": cfg.model.__class__(model="/models/m"),
                         "channels_last": True, "compile": False})
    specs = train_fields()
    values = form_values(specs, cfg, guard.show)
    keys = [s.key for s in specs]
    assert values[keys.index("embedding")] == "emb.pt"  # shown relative to the root
    assert [values[keys.index(k)] for k in ("gradient_checkpointing", "channels_last", "compile")] == ["", "on", "off"]
    assert build_train_config(specs, values, guard, "/models/m") == cfg


def test_the_form_leaves_profile_decided_switches_to_the_profile(guard):
    """A fresh form sends None for gradient checkpointing, channels-last, compile and heap reuse, so
    --profile low-memory still turns checkpointing on (a checkbox would have sent False); and for
    buckets, on by themselves when the images' shapes differ."""
    specs = train_fields()
    switches = [s for s in specs if s.kind == "switch"]
    assert {s.key for s in switches} == {"gradient_checkpointing", "channels_last", "compile", "heap_reuse", "buckets"}
    assert all(s.default is None and s.choices == ("on", "off") for s in switches)
    (guard.root / "emb.pt").write_bytes(b"x")
    (guard.root / "data").mkdir(exist_ok=True)
    values = [{"embedding": "emb.pt", "data": "data"}.get(s.key, "" if s.kind == "switch" else s.default)
              for s in specs]
    values = [list(v) if isinstance(v, tuple) else ("" if v is None else v) for v in values]
    cfg = build_train_config(specs, values, guard, "/models/m")
    assert (cfg.gradient_checkpointing, cfg.channels_last, cfg.compile, cfg.heap_reuse, cfg.buckets) == (None,) * 5


def test_resume_keeps_the_stored_config_and_takes_only_resumable_changes(guard, tiny_model_dirs):
    from tistudio.config import dump_toml
    from tistudio.webui.app import make_context
    from tistudio.webui.train_resume import config, form_values

    ctx = make_context(guard.root, str(tiny_model_dirs["sd1"]))
    (guard.root / "emb.pt").write_bytes(b"x")
    run = guard.root / "runs" / "emb"
    run.mkdir(parents=True)
    stored = TrainConfig(embedding=str(guard.root / "emb.pt"), data=str(guard.root / "data"), lr="0.02",
                         log_dir=str(guard.root / "runs"), steps=3, template="subject",
                         model=TrainConfig().model.__class__(model=str(tiny_model_dirs["sd1"])))
    (run / "config.toml").write_text(dump_toml(stored))
    specs = train_fields()
    values = dict(zip([s.key for s in specs], form_values(specs, stored, ctx.guard.show)))
    values.update(steps=6, lr="0.5")  # lr is read-only in the page: a value sent anyway is not taken
    root, cfg, diff = config(ctx, specs, "runs/emb", list(values.values()))
    assert root == run and diff == [("steps", 3, 6)]
    assert cfg == TrainConfig(**{**stored.__dict__, "steps": 6})
    (run / "config.toml").write_text(dump_toml(TrainConfig(**{**stored.__dict__, "data": "/elsewhere"})))
    with pytest.raises(TIStudioError, match="outside the web UI root"):
        config(ctx, specs, "runs/emb", list(values.values()))


def test_the_starting_point_is_never_the_default_download(tmp_path):
    import os

    from tistudio.webui import runs

    folder = tmp_path / "tok" / "embeddings"
    folder.mkdir(parents=True)
    for i, name in enumerate(["tok-2.pt", "tok-best.pt", "tok-init.safetensors"]):
        (folder / name).write_bytes(b"x")
        os.utime(folder / name, (1000 + i, 1000 + i))
    assert [p.name for p in runs.snapshots(tmp_path / "tok")] == ["tok-best.pt", "tok-2.pt", "tok-init.safetensors"]


def test_the_server_starts_without_advertising_a_public_link(tmp_path, capfd):
    pytest.importorskip("gradio")
    import socket

    from tistudio.webui.app import make_context, serve

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app, url = serve(make_context(tmp_path), "127.0.0.1", port, block=False)
    try:
        assert url.startswith(f"http://127.0.0.1:{port}")
    finally:
        app.close()
    out = capfd.readouterr()
    assert "share=True" not in out.out + out.err  # this tool never opens a public tunnel


def test_a_failed_run_names_the_forms_labels():
    from tistudio.webui.jobs import JobView
    from tistudio.webui.tab_train_output import status_text

    view = JobView(id=3, name="tok", status="failed", cfg=None, resume=None, points=(), last=None, previews=(),
                   saved=(), messages=(), finished=None, error="--steps 5: the embedding is already at step 9",
                   run_dir="runs/tok")
    assert status_text(view) == "**tok** (run 3): failed: Max steps 5: the embedding is already at step 9"


def test_the_poll_redraws_a_long_chart_only_every_few_seconds_while_training(tmp_path):
    """The status line follows every step; the chart (the browser's costliest redraw) every tick
    while it is short, every CHART_SECONDS x points / MAX_POINTS seconds when long, and at once when
    the run ends."""
    gr = pytest.importorskip("gradio")
    from tistudio.webui import tab_train_output
    from tistudio.webui.jobs import TrainingJob

    skip = type(gr.skip())
    job = TrainingJob(1, TrainConfig(), None, str(tmp_path), "tok")
    jobs = type("Jobs", (), {"latest": lambda self: job})()
    t = [100.0]

    def tick(seen):
        *out, seen = tab_train_output.poll(jobs, seen, clock=lambda: t[0])
        return out, seen

    def steps(first, last):
        job.record([Progress(n, 900, 1.0 / n, 0.01, 0, n - 1, 0.01, 1.0) for n in range(first, last + 1)])

    steps(1, 2)
    out, seen = tick(None)
    assert "step **2/900**" in out[0] and list(out[1]["step"]) == [1, 2, 1, 2]  # loss and its moving average
    steps(3, 3)
    t[0] += 1
    out, seen = tick(seen)
    assert len(out[1]) == 6  # a short chart follows every tick
    out, seen = tick(seen)
    assert all(isinstance(o, skip) for o in out)  # nothing new: nothing sent
    steps(4, 600)
    t[0] += 1
    out, seen = tick(seen)
    assert len(out[1]) == 1200  # drawn 1 s after a 3-point chart
    steps(601, 700)
    t[0] += 2
    out, seen = tick(seen)
    assert "step **700/900**" in out[0] and isinstance(out[1], skip)  # 600 points: redrawn after 3 s
    steps(701, 710)
    t[0] += 1
    out, seen = tick(seen)
    assert len(out[1]) == 1420
    steps(711, 720)
    job.status = "finished"
    t[0] += 0.1
    out, seen = tick(seen)
    assert len(out[1]) == 1440  # the run ended: its last points at once


def test_the_training_process_sends_steps_in_batches_and_outlives_a_gone_server():
    import multiprocessing

    from tistudio.events import Message
    from tistudio.webui.worker import FLUSH_SECONDS, Sender

    ours, theirs = multiprocessing.Pipe(duplex=False)
    t = [0.0]
    send = Sender(theirs, clock=lambda: t[0])

    def step(n):
        return Progress(n, 9, 0.5, 0.01, 0, n - 1, 0.01, 0.0)

    send(step(1))
    assert ours.recv() == ("events", [step(1)])  # the first step at once: the page shows training began
    t[0] += FLUSH_SECONDS / 2
    send(step(2))
    assert not ours.poll()
    send(Message("info", "saved"))  # anything else at once, after the steps before it
    assert ours.recv() == ("events", [step(2), Message("info", "saved")])
    t[0] += FLUSH_SECONDS / 2
    send(step(3))
    t[0] += FLUSH_SECONDS
    send(step(4))
    assert ours.recv() == ("events", [step(3), step(4)]) and not ours.poll()
    ours.close()  # the server is gone (killed): the run goes on to its save without a word
    send(Finished(4, "interrupted", ()))
    send.send(("finished", ""))


def test_the_poll_ticks_fast_only_while_the_latest_run_trains(tmp_path):
    """The timer's interval is sent when it changes: POLL_SECONDS from the first tick of a running
    job, IDLE_SECONDS once it has ended (and on a page with no run); the saved files are sent only
    when the status changes, not with every step."""
    gr = pytest.importorskip("gradio")
    from tistudio.webui import tab_train_output
    from tistudio.webui.jobs import TrainingJob

    skip = type(gr.skip())
    latest = [None]
    jobs = type("Jobs", (), {"latest": lambda self: latest[0]})()

    *out, seen = tab_train_output.poll(jobs, None)
    assert out[0] == "No training run in this session yet." and out[6].value == tab_train_output.IDLE_SECONDS
    *out, seen = tab_train_output.poll(jobs, seen)
    assert all(isinstance(o, skip) for o in out)  # idle and unchanged: not even the timer
    job = latest[0] = TrainingJob(1, TrainConfig(), None, str(tmp_path), "tok")
    job.record([Progress(1, 9, 0.5, 0.01, 0, 0, 0.01, 1.0)])
    *out, seen = tab_train_output.poll(jobs, seen)
    assert out[6].value == tab_train_output.POLL_SECONDS and out[5] == ""
    job.record([Progress(2, 9, 0.4, 0.01, 0, 1, 0.01, 1.0)])
    *out, seen = tab_train_output.poll(jobs, seen)
    assert "step **2/9**" in out[0] and isinstance(out[5], skip) and isinstance(out[6], skip)
    job.status = "finished"
    *out, seen = tab_train_output.poll(jobs, seen)
    assert out[6].value == tab_train_output.IDLE_SECONDS and "finished" in out[0]


def test_packed_inputs_come_back_as_their_components_hand_them_to_an_event():
    """Train and Resume send the form as one JSON text (context.PACK): numbers are rounded as the
    field's precision says, checkboxes stay booleans, a dropdown's value is kept as the page held it
    (its choices may have changed since the page was built)."""
    gr = pytest.importorskip("gradio")
    from tistudio.webui.context import PACK, packed

    with gr.Blocks():
        steps, lr = gr.Number(precision=0), gr.Number()
        flag, run = gr.Checkbox(), gr.Dropdown([""], value="", allow_custom_value=False)
        carrier, button = gr.Textbox(visible=False), gr.Button()
        then, unpack = packed(button.click, [steps, lr, flag, run], carrier)
    assert PACK.startswith("(...values) =>") and callable(then)
    assert unpack('[200.0, 0.005, true, "runs/tok"]') == [200, 0.005, True, "runs/tok"]
    assert isinstance(unpack("[7, null, false, null]")[0], int)
