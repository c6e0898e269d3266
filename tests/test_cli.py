"""The CLI as a user runs it: subprocesses, real files, one-line errors."""
import subprocess
import sys

import torch
from PIL import Image

from tistudio.embedding.formats import load_embedding


def tistudio(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "tistudio", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def test_create_train_generate(tiny_model_dirs, dataset, tmp_path):
    model = tiny_model_dirs["sd1"]
    r = tistudio("create", "mystyle", "--model", model, "--init-text", "painting", "--vectors", "2",
                 "--out", tmp_path / "emb")
    assert r.returncode == 0, r.stderr
    r = tistudio("train", "--model", model, "--embedding", tmp_path / "emb" / "mystyle.pt", "--data", dataset,
                 "--steps", 3, "--width", 64, "--height", 64, "--save-every", 2, "--preview-every", 3,
                 "--preview-steps", 2, "--log-dir", tmp_path / "runs", "--lr", "0.01", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "completed at step 3" in r.stdout
    trained = load_embedding(tmp_path / "emb" / "mystyle.pt")
    assert trained.step == 3 and trained.vectors[0].shape == (2, 32)
    assert load_embedding(tmp_path / "emb" / "mystyle.safetensors").step == 3
    run = tmp_path / "runs" / "mystyle"
    assert (run / "embeddings" / "mystyle-2.pt").is_file() and (run / "images" / "mystyle-3.png").is_file()

    r = tistudio("generate", "--model", model, "--prompt", "a picture in mystyle", "--negative-prompt", "blurry",
                 "--embeddings", tmp_path / "emb", "--steps", 2, "--width", 64, "--height", 64, "--n", 2,
                 "--seed", 7, "--out", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    first = Image.open(tmp_path / "out" / "00000-7.png")
    params = first.info["parameters"]
    assert params.startswith("a picture in mystyle\nNegative prompt: blurry\nSteps: 2")
    assert "Seed: 7" in params and "Size: 64x64" in params
    assert "Seed: 8" in Image.open(tmp_path / "out" / "00001-8.png").info["parameters"]


def test_resume_from_run_folder_and_toml_config(tiny_model_dirs, dataset, tmp_path):
    model = tiny_model_dirs["sd1"]
    assert tistudio("create", "tok", "--model", model, "--out", tmp_path).returncode == 0
    toml = tmp_path / "run.toml"
    toml.write_text(f'embedding = "{tmp_path / "tok.pt"}"\ndata = "{dataset}"\nsteps = 2\nwidth = 64\n'
                    f'height = 64\nsave_every = 0\npreview_every = 0\nlog_dir = "{tmp_path / "runs"}"\n'
                    f'lr = "0.01"\n[model]\nmodel = "{model}"\n')
    r = tistudio("train", "--config", toml, "--quiet")
    assert r.returncode == 0, r.stderr
    r = tistudio("train", "--resume", tmp_path / "runs" / "tok", "--steps", 4, "--quiet")
    assert r.returncode == 0, r.stderr
    assert "resumed" in r.stdout and "completed at step 4" in r.stdout
    emb = load_embedding(tmp_path / "tok.pt")
    assert emb.step == 4 and torch.isfinite(emb.vectors[0]).all()


def test_errors_are_one_line(tiny_model_dirs, tmp_path):
    model = tiny_model_dirs["sd1"]
    tistudio("create", "tok", "--model", model, "--out", tmp_path)
    cases = [
        (["train", "--model", model, "--embedding", tmp_path / "tok.pt", "--data", tmp_path / "nope"], "nope"),
        (["train", "--model", tmp_path / "no-model", "--embedding", tmp_path / "tok.pt", "--data", tmp_path],
         "no-model"),
        (["train", "--model", model, "--embedding", tmp_path / "tok.pt", "--data", tmp_path, "--width", "100"],
         "--width 100"),
        (["generate", "--model", model, "--prompt", "x", "--sampler", "ddim", "--width", "30"], "--width 30"),
        (["train", "--config", tmp_path / "missing.toml"], "missing.toml"),
    ]
    for args, fragment in cases:
        r = tistudio(*args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        err = r.stderr.strip().splitlines()
        assert "Traceback" not in r.stderr and err[-1].startswith("error: ") and fragment in err[-1], r.stderr
        assert len(err) == 1, r.stderr


def test_help_is_instant_and_lists_commands():
    r = tistudio("--help")
    assert r.returncode == 0
    for command in ("create", "train", "generate"):
        assert command in r.stdout
