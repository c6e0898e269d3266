"""Data-parallel training: 2 CPU processes (gloo) with the same seeds and global batch train the same
vectors as one process; only the main process writes files."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tistudio import api
from tistudio.config import TrainConfig
from tistudio.embedding.formats import load_embedding
from tistudio.errors import TIStudioError
from tistudio.train.distributed import Distributed
from tistudio.train.run import train

COMMON = dict(steps=3, width=64, height=64, batch_size=2, lr="0.05", save_every=0, preview_every=0,
              template="subject_filewords", formats=("a1111-pt",), seed=7)


def _flags(model, emb, data, log_dir, out, launcher_flag):
    flags = ["--model", str(model), "--embedding", str(emb), "--data", str(data), "--log-dir", str(log_dir),
             "--output", str(out), "--steps", "3", "--width", "64", "--height", "64", "--batch-size", "2",
             "--lr", "0.05", "--save-every", "0", "--preview-every", "0", "--template", "subject_filewords",
             "--format", "a1111-pt", "--seed", "7", "--quiet"]
    return ["train", *flags, *launcher_flag]


def _one_process(tiny_models, dataset, tmp_path):
    c = tiny_models["sd1"]
    emb = api.create_embedding(c, "tok", "cat", 2, tmp_path / "emb")
    cfg = TrainConfig(embedding=str(emb), data=str(dataset), log_dir=str(tmp_path / "runs1"),
                      output=str(tmp_path / "one.pt"), **COMMON)
    train(cfg, components=c, progress=False)
    return emb, load_embedding(tmp_path / "one.pt")


def _check_same(one, two, start):
    assert two.step == one.step == 3
    for a, b, s in zip(one.vectors, two.vectors, start.vectors):
        assert not torch.equal(a, s)  # it trained
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)


@pytest.mark.e2e
def test_two_processes_train_the_same_vectors_as_one(tiny_models, tiny_model_dirs, dataset, tmp_path):
    emb, one = _one_process(tiny_models, dataset, tmp_path)
    argv = _flags(tiny_model_dirs["sd1"], emb, dataset, tmp_path / "runs2", tmp_path / "two.pt",
                  ["--num-processes", "2"])
    proc = subprocess.run([sys.executable, "-m", "tistudio", *argv], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    _check_same(one, load_embedding(tmp_path / "two.pt"), load_embedding(emb))
    # One process writes: one report on stdout, one run folder with the whole loss history.
    assert proc.stdout.count("completed at step 3") == 1
    rows = (tmp_path / "runs2" / "tok" / "loss.csv").read_text().splitlines()
    assert len(rows) == 4


def test_a_failing_process_fails_the_launch_with_its_error(tiny_models, tiny_model_dirs, dataset, tmp_path):
    """--num-processes goes through accelerate's launcher: each of the 2 processes sees WORLD_SIZE 2
    (so batch 3 cannot split), prints its one-line error, and its exit code is the command's."""
    emb = api.create_embedding(tiny_models["sd1"], "tok", "cat", 1, tmp_path / "emb")
    argv = _flags(tiny_model_dirs["sd1"], emb, dataset, tmp_path / "runs", tmp_path / "out.pt", ["--num-processes", "2"])
    argv[argv.index("--batch-size") + 1] = "3"
    proc = subprocess.run([sys.executable, "-m", "tistudio", *argv], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.count("error: --batch-size 3: must be a multiple of the 2 processes") == 2
    assert not (tmp_path / "out.pt").exists()


ACCELERATE = Path(sys.executable).parent / "accelerate"


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.skipif(not ACCELERATE.exists(), reason="accelerate's launcher is not in this environment")
def test_accelerate_launch_matches_one_process(tiny_models, tiny_model_dirs, dataset, tmp_path):
    emb, one = _one_process(tiny_models, dataset, tmp_path)
    argv = _flags(tiny_model_dirs["sd1"], emb, dataset, tmp_path / "runs2", tmp_path / "two.pt", [])
    # --multi_gpu: N local processes under torchrun, over gloo on a CPU (accelerate's --cpu starts one).
    proc = subprocess.run([str(ACCELERATE), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
                           "-m", "tistudio", *argv],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    _check_same(one, load_embedding(tmp_path / "two.pt"), load_embedding(emb))


def test_batch_must_split_evenly(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(TIStudioError, match="--batch-size 3: must be a multiple of the 2 processes"):
        Distributed.from_env(3, "cpu")


def test_alone_is_a_no_op():
    d = Distributed()
    assert d.is_main and d.reduce([], 1.5, True) == (1.5, True) and d.any_stopped(False) is False
    assert d.device(torch.device("cpu")) == torch.device("cpu")
