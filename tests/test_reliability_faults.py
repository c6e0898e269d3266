"""Environment faults: a full disk or read-only folder mid-run gives one clear line and leaves the
last good state whole (and resumable); a missing model, an image deleted while caching give clear
errors; --keep-last bounds the snapshots; temporaries of a killed run are cleared; output files get
normal permissions."""
from __future__ import annotations

import errno
import os
import types
from pathlib import Path

import pytest
import torch

from tistudio import api, atomic
from tistudio.atomic import is_temporary, write_text
from tistudio.config import ModelConfig
from tistudio.embedding.formats import load_embedding
from tistudio.errors import TIStudioError
from tistudio.events import Message
from tistudio.train.run import train

from run_config import quick_config


config = quick_config


@pytest.fixture
def emb(tiny_models, tmp_path):
    return api.create_embedding(tiny_models["sd1"], "tok", "cat", 1, tmp_path / "emb")


def failing_os(fail_for: str, err: int, after: int = 0):
    """An `os` for tistudio.atomic whose fsync fails with `err` on the (after+1)-th file whose name
    contains `fail_for`, once some bytes are already in the temporary (as a full disk does)."""
    seen = [0]

    def fsync(fd):
        target = os.readlink(f"/proc/self/fd/{fd}")
        if fail_for in Path(target).name:
            seen[0] += 1
            if seen[0] > after:
                raise OSError(err, os.strerror(err))
        return os.fsync(fd)

    return types.SimpleNamespace(**{**{k: getattr(os, k) for k in dir(os) if not k.startswith("__")}, "fsync": fsync})


@pytest.mark.parametrize("victim", ["state.pt", "tok-4.safetensors", "loss.csv"])
def test_disk_full_mid_run_keeps_the_last_good_state(tiny_models, dataset, emb, tmp_path, monkeypatch, victim):
    c = tiny_models["sd1"]
    # state.pt and loss.csv are written at steps 2 and 4: fail the second; the snapshot once.
    monkeypatch.setattr(atomic, "os", failing_os(victim, errno.ENOSPC, after=0 if "tok-4" in victim else 1))
    with pytest.raises(TIStudioError) as err:
        train(config(emb, dataset, tmp_path), components=c, progress=False)
    text = str(err.value)
    assert "\n" not in text and text.startswith("cannot write ") and victim in text
    assert "No space left on device; the disk is full" in text
    run = tmp_path / "runs" / "tok"
    state = torch.load(run / "state.pt", weights_only=True)
    assert state["step"] == 2  # the last good state, whole
    assert not [p for p in run.rglob("*") if is_temporary(p)]
    assert not (run / "embeddings" / victim).exists()
    monkeypatch.setattr(atomic, "os", os)  # space freed: the run resumes and completes
    r = train(config(emb, dataset, tmp_path), components=c, progress=False, resume=str(run))
    assert r.step == 6 and load_embedding(tmp_path / "out" / "final.pt").step == 6


def test_read_only_output_folder_is_one_clear_line(tiny_models, dataset, emb, tmp_path, monkeypatch):
    def refuse(*a, **kw):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(atomic.tempfile, "mkstemp", refuse)
    with pytest.raises(TIStudioError, match="Read-only file system; the file system is read-only; choose a "
                                            "folder on a writable disk") as err:
        train(config(emb, dataset, tmp_path), components=tiny_models["sd1"], progress=False)
    assert "\n" not in str(err.value) and "config.toml" in str(err.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders anyway")
def test_really_read_only_log_dir(tiny_models, dataset, emb, tmp_path):
    (tmp_path / "runs").mkdir()
    os.chmod(tmp_path / "runs", 0o555)
    try:
        with pytest.raises(TIStudioError, match="no permission to write there"):
            train(config(emb, dataset, tmp_path), components=tiny_models["sd1"], progress=False)
    finally:
        os.chmod(tmp_path / "runs", 0o755)


def test_unwritable_log_dir_through_the_cli(cli, tiny_model_dirs, dataset, emb, tmp_path):
    """/sys refuses new entries even to root: a real unwritable folder."""
    if not os.path.isdir("/sys/kernel"):
        pytest.skip("no /sys")
    run = cli("train", "--model", tiny_model_dirs["sd1"], "--embedding", emb, "--data", dataset, "--steps", "1",
              "--width", "64", "--height", "64", "--log-dir", "/sys/kernel/tistudio-runs", "--quiet")
    assert run.returncode == 2 and run.stderr.startswith("error: cannot write /sys/kernel/tistudio-runs")
    assert run.stderr.count("\n") == 1, run.stderr


def test_missing_model_file_is_a_clear_error(cli, tmp_path, dataset, emb):
    run = cli("train", "--model", tmp_path / "gone.safetensors", "--embedding", emb, "--data", dataset,
              "--steps", "1", "--quiet")
    assert run.returncode == 2 and run.stderr.startswith("error: ") and run.stderr.count("\n") == 1
    assert "gone.safetensors" in run.stderr


def test_model_gone_before_a_resume_is_a_clear_error(cli, tiny_model_dirs, tiny_models, dataset, emb, tmp_path):
    import shutil

    model = shutil.copytree(tiny_model_dirs["sd1"], tmp_path / "model")
    train(config(emb, dataset, tmp_path, steps=2, model=ModelConfig(model=str(model))), components=tiny_models["sd1"],
          progress=False)
    shutil.rmtree(model)
    run = cli("train", "--resume", tmp_path / "runs" / "tok", "--steps", "4", "--quiet")
    assert run.returncode == 2 and run.stderr.startswith("error: ") and run.stderr.count("\n") == 1
    assert str(model) in run.stderr
    assert torch.load(tmp_path / "runs" / "tok" / "state.pt", weights_only=True)["step"] == 2


@pytest.mark.parametrize("cache", ["memory", "disk"])
def test_image_deleted_while_caching(tiny_models, dataset, emb, tmp_path, monkeypatch, cache):
    import tistudio.data.concepts as concepts_mod  # where the run scans its folders

    real_scan = concepts_mod.scan_images

    def scan_then_delete(folder):
        images, skipped = real_scan(folder)
        images[-1].unlink()  # another process removes an image after the scan, before its latents
        return images, skipped

    monkeypatch.setattr(concepts_mod, "scan_images", scan_then_delete)
    last = sorted(dataset.glob("*.png"))[-1]
    with pytest.raises(TIStudioError) as err:
        train(config(emb, dataset, tmp_path, latent_cache=cache), components=tiny_models["sd1"], progress=False)
    text = str(err.value)
    assert "\n" not in text and last.name in text
    # The bucket plan reads every image's size before any latent is cached: both caches refuse it there.
    assert "cannot be read" in text and "fix or remove it" in text


def test_keep_last_bounds_the_snapshots(tiny_models, dataset, emb, tmp_path):
    train(config(emb, dataset, tmp_path, steps=10, save_every=2, keep_last=2, formats=("a1111-pt", "safetensors")),
          components=tiny_models["sd1"], progress=False)
    names = sorted(p.name for p in (tmp_path / "runs" / "tok" / "embeddings").iterdir()
                   if p.name[4:5].isdigit())
    assert names == ["tok-10.pt", "tok-10.safetensors", "tok-8.pt", "tok-8.safetensors"]


def test_resume_clears_temporaries_and_works_before_the_first_save(tiny_models, dataset, emb, tmp_path):
    c = tiny_models["sd1"]
    run = tmp_path / "runs" / "tok"
    run.mkdir(parents=True)
    write_text(run / "config.toml", "steps = 3\n")  # a run killed before it saved anything
    stale = [run / ".state.pt.x1y2.tmp", run / "embeddings" / ".tok-2.pt.abcd.tmp"]
    for p in stale:
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(b"half a fi")
    messages = []
    r = train(config(emb, dataset, tmp_path, steps=3), components=c, progress=False, resume=str(run),
              callback=lambda e: messages.append(e.text) if isinstance(e, Message) else None)
    assert r.step == 3 and not any(p.exists() for p in stale)
    assert any("no state.pt yet; starting from the beginning" in m for m in messages)
    fresh = train(config(emb, dataset, tmp_path / "b", steps=3), components=c, progress=False)
    assert fresh.step == 3
    assert torch.equal(load_embedding(tmp_path / "out" / "final.pt").vectors[0],
                       load_embedding(tmp_path / "b" / "out" / "final.pt").vectors[0])


def test_outputs_get_normal_permissions_and_keep_existing_ones(tmp_path):
    mask = os.umask(0o022)
    os.umask(mask)
    new = write_text(tmp_path / "a.txt", "x")
    assert new.stat().st_mode & 0o777 == 0o666 & ~mask  # not mkstemp's 0600
    os.chmod(new, 0o640)
    write_text(new, "y")
    assert new.stat().st_mode & 0o777 == 0o640 and new.read_text() == "y"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = write_text(tmp_path / "keep.txt", "old")

    def half_then_full(tmp):
        tmp.write_text("new but cut")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(TIStudioError, match="keep.txt: No space left on device"):
        atomic.write_with(target, half_then_full)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
