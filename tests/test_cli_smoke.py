"""Each `tistudio` command once as a user runs it, in its own process: real argv, real exit status,
nothing of the test process's state. Everything else about the commands is tested in process
through the `cli` fixture (conftest.py), which pays the torch + diffusers import only once."""
import json
import subprocess
import sys

import pytest
import torch
from PIL import Image

from tistudio.embedding.embedding import Embedding
from tistudio.embedding.formats import load_embedding, save_embedding

pytestmark = pytest.mark.e2e


def tistudio(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "tistudio", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def test_help_is_instant_and_lists_commands():
    r = tistudio("--help")
    assert r.returncode == 0
    for command in ("create", "train", "generate"):
        assert command in r.stdout


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

    r = tistudio("runs", tmp_path / "runs")
    assert r.returncode == 0, r.stderr
    line = next(x for x in r.stdout.splitlines() if x.startswith("mystyle "))
    assert line.split()[1] == "3" and line.endswith("completed")


def test_create_hypernetwork(tiny_model_dirs, tmp_path):
    r = tistudio("create-hypernetwork", "hn", "--model", tiny_model_dirs["sd1"], "--out", tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "hn.pt").is_file()


def test_convert_and_inspect(tmp_path):
    save_embedding(Embedding("a", (torch.full((1, 768), 0.5),)), tmp_path / "a.pt")
    r = tistudio("convert", tmp_path / "a.pt", tmp_path / "b.safetensors")
    assert r.returncode == 0, r.stderr
    assert "1 vectors x 768" in r.stdout
    r = tistudio("inspect", tmp_path / "b.safetensors", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["norms"] == [[round(0.5 * 768 ** 0.5, 4)]]


def test_preprocess_and_check(dataset, tmp_path):
    r = tistudio("preprocess", dataset, tmp_path / "out", "--width", 32, "--height", 32, "--no-progress")
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "out").glob("*.png"))) == 4
    r = tistudio("check", tmp_path / "out", "--json", "--width", 32, "--height", 32)
    assert r.returncode == 0, r.stderr  # usable: only warnings (few images, no captions)
    report = json.loads(r.stdout)
    assert report["usable"] and report["images"] == 4


def test_toy_concepts():
    r = tistudio("toy", "concepts")
    assert r.returncode == 0, r.stderr
    assert "teal star" in r.stdout


def test_bench_refuses_a_bad_concept_in_one_line(tmp_path):
    r = tistudio("bench", "fidelity", "--concept", "teal hexagon", "--out", tmp_path / "b")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--concept" in r.stderr, r.stderr
    assert not (tmp_path / "b").exists()


def test_webui_refuses_0000_without_auth_before_starting(tmp_path):
    out = tistudio("webui", "--host", "0.0.0.0", "--root", tmp_path, cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip() == ("error: --host 0.0.0.0: serving beyond this machine needs a password; add "
                                  "--auth USER:PASS or --auth-file FILE, or keep the default --host 127.0.0.1")
