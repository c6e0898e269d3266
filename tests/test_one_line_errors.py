"""Every traceback a new user met is now one line naming the file or option and the fix,
and the exit codes say what happened. In-process `main([...])` unless the process itself is tested."""
import os
import subprocess
import sys

import pytest

from tistudio import api
from tistudio.cli.main import main
from tistudio.train.loop import TrainResult

SYS_DIR = "/sys/kernel"  # refuses new entries even to root: a real unwritable folder


def one_line_error(capsys, code, expected=2) -> str:
    # In process, transformers' weight-loading bars (off in a fresh `tistudio` process) share stderr.
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line and "it/s]" not in line]
    assert code == expected and len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.fixture
def emb(tiny_models, tmp_path):
    return api.create_embedding(tiny_models["sd1"], "tok", "painting", 1, tmp_path / "emb")


def train_args(model, emb, dataset, tmp_path, *extra):
    return ["train", "--model", str(model), "--embedding", str(emb), "--data", str(dataset), "--steps", "1",
            "--width", "64", "--height", "64", "--log-dir", str(tmp_path / "runs"), "--quiet", *map(str, extra)]


def test_device_spelling_is_checked(tiny_model_dirs, emb, dataset, tmp_path, capsys):
    line = one_line_error(capsys, main(train_args(tiny_model_dirs["sd1"], emb, dataset, tmp_path, "--device", "tpu")))
    assert line == "error: --device tpu: use auto, cpu, cuda, cuda:N or mps"


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a CUDA device is present")
def test_cuda_on_a_machine_without_it(tiny_model_dirs, emb, dataset, tmp_path, capsys):
    line = one_line_error(capsys, main(train_args(tiny_model_dirs["sd1"], emb, dataset, tmp_path, "--device", "cuda")))
    assert line.startswith("error: --device cuda: ") and line.endswith("; use --device cpu (or auto)")
    assert not (tmp_path / "runs").exists()  # refused before any work


def test_wrong_type_in_a_toml_names_the_key_and_an_example(tmp_path, capsys):
    toml = tmp_path / "run.toml"
    toml.write_text('steps = "many"\n')
    line = one_line_error(capsys, main(["train", "--config", str(toml)]))
    assert line == f'error: {toml}: steps = "many" is not a whole number; e.g. steps = 3000'
    toml.write_text("lr = 0.01\nsteps = true\n")  # a number for the lr grammar is fine; a bool is not a count
    assert "steps = true is not a whole number" in one_line_error(capsys, main(["train", "--config", str(toml)]))
    toml.write_text('[model]\nclip_skip = "2"\n')
    assert 'clip_skip = "2" is not a whole number; e.g. clip_skip = 1' in \
        one_line_error(capsys, main(["train", "--config", str(toml)]))


def test_runs_of_a_missing_folder_names_the_positional_argument(tmp_path, capsys):
    line = one_line_error(capsys, main(["runs", str(tmp_path / "nope")]))
    assert line.startswith(f"error: LOG_DIR {tmp_path / 'nope'}: no such folder; give the folder your runs")
    assert "`tistudio runs DIR`" in line


@pytest.mark.skipif(not os.path.isdir(SYS_DIR), reason="no /sys")
def test_write_failures_suggest_no_other_commands_flags(tiny_model_dirs, emb, capsys):
    model = str(tiny_model_dirs["sd1"])
    for args in (["create", "x", "--model", model, "--out", f"{SYS_DIR}/tis-emb"],
                 ["convert", str(emb), f"{SYS_DIR}/tis-out.safetensors"],
                 ["generate", "--model", model, "--prompt", "x", "--steps", "1", "--width", "64", "--height", "64",
                  "--out", f"{SYS_DIR}/tis-images"]):
        line = one_line_error(capsys, main(args))
        assert line.startswith(f"error: cannot write {SYS_DIR}/tis-") and "choose a folder" in line, line
        assert "--log-dir" not in line and "--output" not in line and "--keep-last" not in line, line


@pytest.mark.skipif(not os.path.isdir(SYS_DIR), reason="no /sys")
def test_preprocess_into_an_unwritable_folder(dataset, capsys):
    line = one_line_error(capsys, main(["preprocess", str(dataset), f"{SYS_DIR}/tis-pre", "--no-progress"]))
    assert line.startswith(f"error: cannot write {SYS_DIR}/tis-pre: ") and "choose a folder" in line


def test_preprocess_refuses_a_folder_it_may_not_write_before_reading_images(dataset, tmp_path, monkeypatch, capsys):
    # As root (this test machine) every folder is writable, so the permission answer is faked.
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    line = one_line_error(capsys, main(["preprocess", str(dataset), str(tmp_path / "out"), "--no-progress"]))
    assert line == f"error: DST {tmp_path / 'out'}: no permission to write in {tmp_path}; choose a folder you can write to"
    assert not (tmp_path / "out").exists()


def test_preprocess_without_a_usable_image_fails(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    (src / "notes.md").write_text("not an image")
    (src / "empty.png").write_bytes(b"")
    line = one_line_error(capsys, main(["preprocess", str(src), str(tmp_path / "out"), "--no-progress"]))
    assert line.startswith(f"error: SRC {src}: no usable image among 2 files (e.g. empty.png: ")
    assert "put PNG/JPEG/WebP images in it" in line
    (src / "notes.md").unlink()
    (src / "empty.png").unlink()
    line = one_line_error(capsys, main(["preprocess", str(src), str(tmp_path / "out"), "--no-progress"]))
    assert line == f"error: SRC {src}: holds no images to preprocess; put PNG/JPEG/WebP images in it"


def test_inspect_top_beyond_the_vocabulary(tiny_model_dirs, emb, capsys):
    line = one_line_error(capsys, main(["inspect", str(emb), "--model", str(tiny_model_dirs["sd1"]), "--top", "100000"]))
    assert line == "error: --top 100000: the vocabulary has 49408 tokens; give at most 49408 (e.g. --top 5)"


@pytest.mark.e2e
def test_inspect_into_a_closed_pipe_is_quiet(emb):
    """`tistudio inspect FILE | head -1`: the reader leaves before we write."""
    proc = subprocess.Popen([sys.executable, "-m", "tistudio", "inspect", str(emb)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # long before the interpreter and torch have loaded
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert "Traceback" not in err and "BrokenPipe" not in err and err == "", err


def test_inspect_names_the_toy_models_family(toy_model_dir, tmp_path, capsys):
    path = api.create_embedding(str(toy_model_dir), "toytok", "star", 1, tmp_path)
    assert main(["inspect", str(path), "--model", str(toy_model_dir)]) == 0
    assert "family:       sd1  width 48" in capsys.readouterr().out
    # Without the model, width 48 alone cannot tell the toy model from a tiny SD2 test model.
    assert main(["inspect", str(path)]) == 0
    assert "family:       sd1 (toy model) or sd2 (tiny test model)  width 48" in capsys.readouterr().out


def test_interrupted_training_exits_130(tiny_model_dirs, emb, dataset, tmp_path, monkeypatch, capsys):
    """One Ctrl-C saves and stops; the status says it was interrupted, as a second Ctrl-C's does."""
    import tistudio.api as run_module  # the CLI trains through the API

    monkeypatch.setattr(run_module, "train", lambda cfg, **kw: TrainResult(3, "interrupted", ["x.pt"], 0.1, "runs/tok"))
    assert main(train_args(tiny_model_dirs["sd1"], emb, dataset, tmp_path)) == 130
    assert "interrupted at step 3" in capsys.readouterr().out
    monkeypatch.setattr(run_module, "train", lambda cfg, **kw: TrainResult(1, "completed", [], 0.1, "runs/tok"))
    assert main(train_args(tiny_model_dirs["sd1"], emb, dataset, tmp_path)) == 0
