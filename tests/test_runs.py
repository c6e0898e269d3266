"""Run folders: one owner of every output name (runs/folder.py), one run per folder (identity and
lock), --resume writes where it is pointed, --steps is a target, resume keeps the run's options,
and a damaged state or an unwritable output is one line before any work."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tistudio import api
from tistudio.cli.main import main
from tistudio.config import DreamArtistConfig, ModelConfig, TrainConfig, dump_toml
from tistudio.embedding.formats import load_embedding
from tistudio.errors import TIStudioError
from tistudio.events import Message
from tistudio.runs.folder import RunFolder, best_beside, final_paths
from tistudio.runs.lock import RunLock
from tistudio.train.run import train

from run_config import quick_config, steps_in, tree

NO_MODEL = "/nonexistent/model"  # a run that gets as far as loading the model fails on this
NO_MODEL_CFG = ModelConfig(NO_MODEL)


@pytest.fixture
def emb(tiny_models, tmp_path):
    return api.create_embedding(tiny_models["sd1"], "tok", "cat", 1, tmp_path / "emb")


# -- names ---------------------------------------------------------------------------------
def test_every_name_comes_from_the_run_folder(tmp_path):
    run = RunFolder(tmp_path / "runs" / "v1.5", "v1.5")
    assert run.snapshot(500, "a1111-pt").name == "v1.5-500.pt"
    assert run.snapshot(500, "safetensors", "v1.5-neg").name == "v1.5-neg-500.safetensors"
    assert run.best("a1111-pt", "v1.5-neg").name == "v1.5-neg-best.pt"
    assert run.init_file().name == "v1.5-init.safetensors"
    assert run.preview(20) == run.images / "v1.5-20.png"
    assert [p.name for p in (run.config, run.loss_csv, run.summary, run.state)] == \
        ["config.toml", "loss.csv", "summary.json", "state.pt"]
    finals = final_paths("out/cat.pt", "emb/mystyle.pt", ("a1111-pt", "safetensors"), "mystyle", "mystyle-neg")
    assert [str(p) for p, _ in finals] == ["out/cat-neg.pt", "out/cat-neg.safetensors"]
    assert [str(best_beside(p, f)) for p, f in finals] == ["out/cat-neg-best.pt", "out/cat-neg-best.safetensors"]
    # Without --output the files go beside the input, under the stored name; a partner with its own
    # name keeps it; a dotted name keeps its dot.
    assert [str(p) for p, _ in final_paths(None, "emb/v1.5.pt", ("a1111-pt",), "v1.5")] == ["emb/v1.5.pt"]
    assert [str(p) for p, _ in final_paths(None, "emb/a.pt", ("a1111-pt",), "a", "other")] == ["emb/other.pt"]


def test_dreamartist_best_files_follow_the_output_name(tiny_models, dataset, tmp_path):
    """Was: cat.pt, cat-neg.pt, cat-best.pt and mystyle-neg-best.pt."""
    c = tiny_models["sd1"]
    pos, _ = api.create_dreamartist_pair(c, "mystyle", "cat", 1, "", 1, tmp_path / "emb")
    cfg = TrainConfig(embedding=str(pos), data=str(dataset), steps=2, width=64, height=64, save_every=0,
                      preview_every=0, log_dir=str(tmp_path / "runs"), lr="0.01", template="none",
                      output=str(tmp_path / "out" / "cat.pt"), method="dreamartist", precision="fp32",
                      formats=("a1111-pt",), val_every=2, val_timesteps=1, plot=False,
                      dreamartist=DreamArtistConfig())  # one val timestep: a best file needs a validation, not many
    train(cfg, components=c, progress=False)
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.endswith(".optim")) == \
        ["cat-best.pt", "cat-neg-best.pt", "cat-neg.pt", "cat.pt"]
    assert load_embedding(tmp_path / "out" / "cat-neg-best.pt").vectors[0].shape == \
        load_embedding(tmp_path / "out" / "cat-neg.pt").vectors[0].shape
    embeddings = sorted(p.name for p in (tmp_path / "runs" / "mystyle" / "embeddings").iterdir())
    assert embeddings == ["mystyle-best.pt", "mystyle-init.safetensors", "mystyle-neg-best.pt",
                          "mystyle-neg-init.safetensors"]


def test_the_web_ui_shows_the_folder_training_writes(tiny_model_dirs, dataset, tmp_path):
    """A PNG embedding's trigger is its stored name, not its file name: the web UI named the run
    folder after the file (runs/card) while training wrote runs/cat."""
    from tistudio.webui.jobs import JobRegistry

    model = str(tiny_model_dirs["sd1"])
    made = api.create_embedding(model, "cat", "cat", 1, tmp_path / "emb", fmt="a1111-png")
    card = made.rename(made.with_name("card.png"))
    cfg = quick_config(card, dataset, tmp_path, steps=2, formats=("a1111-pt",), model=ModelConfig(model=model))
    job = JobRegistry().start(cfg)  # trains in a child process (webui/jobs.py)
    assert job.view().run_dir == str(tmp_path / "runs" / "cat") and job.view().name == "cat"
    job.thread.join(120)
    assert job.view().status == "finished", job.view().error
    assert job.view().run_dir == str(tmp_path / "runs" / "cat")  # the folder the run reported
    assert (tmp_path / "runs" / "cat" / "loss.csv").is_file() and not (tmp_path / "runs" / "card").exists()


# -- one run per folder ----------------------------------------------------------------------
def test_another_embedding_with_the_same_name_gets_its_own_folder(tiny_models, dataset, tmp_path):
    c = tiny_models["sd1"]
    first = api.create_embedding(c, "tok", "cat", 1, tmp_path / "a")
    train(quick_config(first, dataset, tmp_path, steps=4), components=c, progress=False)
    before = tree(tmp_path / "runs" / "tok")
    other = api.create_embedding(c, "tok", "dog", 2, tmp_path / "b")  # same name, other vectors
    messages = []
    r = train(quick_config(other, dataset, tmp_path, steps=2, output=str(tmp_path / "out2.pt")), components=c,
              progress=False, callback=lambda e: messages.append(e.text) if isinstance(e, Message) else None)
    assert r.run_dir == str(tmp_path / "runs" / "tok-2") and steps_in(Path(r.run_dir)) == [1, 2]
    assert tree(tmp_path / "runs" / "tok") == before  # the first run's folder is untouched
    assert RunFolder.open(r.run_dir).name == "tok"
    assert load_embedding(Path(r.run_dir) / "embeddings" / "tok-2.pt").vectors[0].shape[0] == 2
    assert any("runs/tok is the run of" in m and "tok-2" in m for m in messages), messages


def test_the_same_embedding_trained_further_continues_its_folder(tiny_models, dataset, emb, tmp_path):
    """The finished file (it replaces --embedding by default) trained further: the same run, the
    same folder."""
    c = tiny_models["sd1"]
    cfg = quick_config(emb, dataset, tmp_path, steps=2, output=None)
    train(cfg, components=c, progress=False)
    r = train(quick_config(emb, dataset, tmp_path, steps=4, output=None), components=c, progress=False)
    run = tmp_path / "runs" / "tok"
    assert r.run_dir == str(run) and steps_in(run) == [1, 2, 3, 4]
    assert not (tmp_path / "runs" / "tok-2").exists()


@pytest.mark.e2e
def test_a_folder_in_use_is_refused_and_a_dead_owners_lock_is_taken_over(tiny_models, dataset, emb, tmp_path):
    c = tiny_models["sd1"]
    run = tmp_path / "runs" / "tok"
    run.mkdir(parents=True)
    code = ("import sys, time; from tistudio.runs.lock import RunLock; RunLock(sys.argv[1]).acquire(); "
            "print('locked', flush=True); time.sleep(600)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(run / ".lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(TIStudioError, match=rf"runs/tok: another training is writing this run folder "
                                                rf"\(pid {holder.pid} on "):
            train(quick_config(emb, dataset, tmp_path, steps=2), components=c, progress=False)
        assert not (run / "loss.csv").exists() and not (run / "config.toml").exists()
    finally:
        holder.kill()  # like kill -9: no clean-up, the lock file stays behind
        holder.wait()
    assert (run / ".lock").is_file()
    r = train(quick_config(emb, dataset, tmp_path, steps=2), components=c, progress=False)
    assert r.step == 2 and not (run / ".lock").exists()  # released at the end


def test_a_second_run_in_the_same_process_is_refused(tmp_path):
    """flock, unlike POSIX record locks, also excludes a second holder in the same process (the web
    UI trains in threads)."""
    lock = RunLock(tmp_path / ".lock").acquire()
    with pytest.raises(TIStudioError, match=f"pid {os.getpid()}"):
        RunLock(tmp_path / ".lock").acquire()
    lock.release()
    RunLock(tmp_path / ".lock").acquire().release()


# -- resume ------------------------------------------------------------------------------------
def test_resume_writes_into_the_folder_it_is_given(tiny_models, dataset, emb, tmp_path):
    """Was: a copied run folder, resumed, wrote into the original named by its config.toml."""
    c = tiny_models["sd1"]
    train(quick_config(emb, dataset, tmp_path, steps=2), components=c, progress=False)
    original = tmp_path / "runs" / "tok"
    before = tree(original)
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(original, copy)
    r = train(quick_config(emb, dataset, tmp_path, steps=4), components=c, progress=False, resume=str(copy))
    assert r.run_dir == str(copy) and steps_in(copy) == [1, 2, 3, 4]
    assert load_embedding(copy / "embeddings" / "tok-4.pt").step == 4
    assert tree(original) == before


def test_a_run_killed_before_its_first_snapshot_resumes_from_step_0(tiny_models, dataset, emb, tmp_path):
    c = tiny_models["sd1"]
    folder = tmp_path / "elsewhere" / "tok"
    folder.mkdir(parents=True)
    cfg = quick_config(emb, dataset, tmp_path, steps=2)
    (folder / "config.toml").write_text(dump_toml(cfg))  # all a run writes before its model loads
    messages = []
    r = train(cfg, components=c, progress=False, resume=str(folder),
              callback=lambda e: messages.append(e.text) if isinstance(e, Message) else None)
    assert r.step == 2 and steps_in(folder) == [1, 2] and not (tmp_path / "runs").exists()
    assert any("no state.pt yet; starting from the beginning (step 0) in that folder" in m for m in messages)


def test_config_toml_is_written_before_the_model_loads(dataset, emb, tmp_path, monkeypatch):
    """So a run interrupted while loading or caching leaves a folder that --resume accepts, while a
    run refused during set-up (here: no model) leaves no folder at all."""
    import tistudio.train.session as session

    cfg = quick_config(emb, dataset, tmp_path, steps=2, model=NO_MODEL_CFG)
    with pytest.raises(TIStudioError):
        train(cfg, progress=False)
    assert not (tmp_path / "runs").exists()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(session, "load_components", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, progress=False)
    run = tmp_path / "runs" / "tok"
    assert (run / "config.toml").is_file() and (run / "run.json").is_file() and not (run / ".lock").exists()


def cli_train(*args) -> list[str]:
    return ["train", "--quiet", *map(str, args)]


def test_resume_refuses_options_that_shape_training_and_lists_them(tiny_models, dataset, emb, tmp_path, capsys):
    folder = tmp_path / "runs" / "tok"
    folder.mkdir(parents=True)
    cfg = quick_config(emb, dataset, tmp_path, steps=6, model=NO_MODEL_CFG)
    (folder / "config.toml").write_text(dump_toml(cfg))
    code = main(cli_train("--resume", folder, "--lr", "0.5", "--batch-size", "2", "--width", "48", "--steps", "9",
                          "--clip-skip", "2"))
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err == (f"error: --resume {folder}: --clip-skip 2 (the run has 1), --lr 0.5 (the run has 0.01), "
                   f"--batch-size 2 (the run has 1), --width 48 (the run has 64): cannot change on resume, since "
                   f"they shape what is trained; drop them to continue the run as {folder / 'config.toml'} has "
                   "it, or start a new run\n")
    # Allowed changes are listed and taken (this one then stops at the missing model).
    code = main(cli_train("--resume", folder, "--steps", "9", "--save-every", "3", "--lr", "0.01"))
    out, err = capsys.readouterr()
    assert code == 2 and "info: --resume: --steps 9 (was 6)" in out and "--save-every 3 (was 2)" in out
    assert "--lr" not in out and NO_MODEL in err
    assert main(cli_train("--resume", folder, "--config", tmp_path / "x.toml")) == 2
    assert "--config " in capsys.readouterr().err


def test_resumable_options_are_one_list_in_the_config_layer():
    from tistudio.config import RESUMABLE, changes, not_resumable

    a = TrainConfig(steps=10)
    b = TrainConfig(steps=20, lr="0.5", model=ModelConfig(clip_skip=2))
    diff = changes(a, b)
    assert diff == [("model.clip_skip", 1, 2), ("lr", "0.005", "0.5"), ("steps", 10, 20)]
    assert not_resumable(diff) == [("model.clip_skip", 1, 2), ("lr", "0.005", "0.5")]
    assert "steps" in RESUMABLE and "lr" not in RESUMABLE


# -- --steps is a target -------------------------------------------------------------------------
def test_steps_already_reached_fails_before_loading_and_touches_nothing(tiny_models, dataset, emb, tmp_path,
                                                                         capsys):
    c = tiny_models["sd1"]
    train(quick_config(emb, dataset, tmp_path, steps=4, output=None), components=c, progress=False)
    assert load_embedding(emb).step == 4
    before = {**tree(tmp_path / "runs"), **tree(emb.parent)}
    code = main(cli_train("--model", NO_MODEL, "--embedding", emb, "--data", dataset, "--steps", 4,
                          "--log-dir", tmp_path / "runs"))
    err = capsys.readouterr().err
    assert code == 2 and err == ("error: tok is already at step 4 (≥ --steps 4); pass --steps M to train M−4 more "
                                 "(e.g. --steps 8 for 4 more)\n")
    assert {**tree(tmp_path / "runs"), **tree(emb.parent)} == before
    # On resume, the run's stored step counts.
    with pytest.raises(TIStudioError, match=r"--resume .*runs/tok: tok is already at step 4 \(≥ --steps 3\)"):
        train(quick_config(emb, dataset, tmp_path, steps=3, model=NO_MODEL_CFG), progress=False,
              resume=str(tmp_path / "runs" / "tok"))


def test_steps_is_documented_as_a_target(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "counted from the step the embedding already stores (as in A1111)" in text
    assert "only these may change: --device --early-stop --format" in text


# -- damaged state, unwritable output -------------------------------------------------------------
@pytest.mark.parametrize("damage", [b"", b"not a torch file"])
def test_damaged_state_names_the_newest_intact_snapshot(tiny_models, dataset, emb, tmp_path, damage):
    c = tiny_models["sd1"]
    train(quick_config(emb, dataset, tmp_path, steps=4), components=c, progress=False)
    run = tmp_path / "runs" / "tok"
    (run / "state.pt").write_bytes(damage)
    for newest in ("tok-4.pt", "tok-4.safetensors"):
        (run / "embeddings" / newest).write_bytes(b"\x00" * 10)
    cfg = quick_config(emb, dataset, tmp_path, steps=6, model=NO_MODEL_CFG)
    with pytest.raises(TIStudioError) as err:
        train(cfg, progress=False, resume=str(run))
    text = str(err.value)
    assert text.startswith(f"{run / 'state.pt'}: damaged training state (") and "\\n" not in text
    assert (f"continue from the newest intact snapshot with --embedding {run / 'embeddings' / 'tok-2.pt'} "
            f"(step 2, without --resume), or delete {run / 'state.pt'} to --resume from step 0") in text


def test_an_unwritable_output_is_found_before_training(tiny_models, dataset, emb, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    cfg = quick_config(emb, dataset, tmp_path, output=str(blocker / "cat.pt"), model=NO_MODEL_CFG)
    with pytest.raises(TIStudioError, match=f"cannot write {blocker / 'cat.pt'}: {blocker} is a file, not a folder"):
        train(cfg, progress=False)
    assert not (tmp_path / "runs").exists()
    if os.path.isdir("/sys/kernel"):  # refuses new files even to root
        cfg = quick_config(emb, dataset, tmp_path, output="/sys/kernel/tistudio-out/cat.pt", model=NO_MODEL_CFG)
        with pytest.raises(TIStudioError, match=r"^cannot write /sys/kernel/tistudio-out/cat.pt: [^\\]+; "):
            train(cfg, progress=False)
        assert not (tmp_path / "runs").exists()


def test_the_runs_listing_reads_a_numbered_folder(tiny_models, dataset, tmp_path, capsys):
    c = tiny_models["sd1"]
    for sub, init in (("a", "cat"), ("b", "dog")):
        e = api.create_embedding(c, "tok", init, 1, tmp_path / sub)
        train(quick_config(e, dataset, tmp_path, steps=2, output=str(tmp_path / sub / "out.pt")), components=c,
              progress=False)
    assert main(["runs", str(tmp_path / "runs")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines[1:]] == [["tok", "2"], ["tok-2", "2"]]


def test_the_readme_lists_the_resumable_options():
    from tistudio.config import RESUMABLE, option_name

    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    resume = " ".join(readme[readme.index("**Resume.**"):].split("\n\n")[0].split())
    assert [f for f in sorted(RESUMABLE) if f"`{option_name(f)}`" not in resume and "preview_" not in f] == []
