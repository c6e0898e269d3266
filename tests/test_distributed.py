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


def _reduce_in(rank: int, store: str, out: str) -> None:
    """One of two gloo processes: `a` has a gradient in both, `b` in rank 1 only, `c` in neither."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    a, b, c = (torch.zeros(2, 3, requires_grad=True) for _ in range(3))
    a.grad = torch.full((2, 3), float(rank + 1))
    if rank == 1:
        b.grad = torch.ones(2, 3)
    total, ok = Distributed(rank=rank, world=2).reduce([a, b, c], 0.25 * (rank + 1), True)
    torch.save({"a": a.grad, "b": b.grad, "c": c.grad, "total": total, "ok": ok}, f"{out}/{rank}.pt")
    dist.destroy_process_group()


def test_a_parameter_no_process_has_a_gradient_for_keeps_none(tmp_path):
    """As in one process, where an embedding no prompt of the step names has no gradient (so AdamW
    leaves it and its moments alone): summed over processes it stays None, not zeros; one that any
    process has is the sum, zeros counted for the others."""
    import torch.multiprocessing as mp

    mp.spawn(_reduce_in, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2)
    for rank in (0, 1):
        got = torch.load(tmp_path / f"{rank}.pt")
        assert torch.equal(got["a"], torch.full((2, 3), 3.0)) and torch.equal(got["b"], torch.ones(2, 3))
        assert got["c"] is None and got["total"] == 0.75 and got["ok"] is True


@pytest.mark.e2e
@pytest.mark.slow
def test_two_processes_train_two_embeddings_as_one_does(tiny_models, tiny_model_dirs, tmp_path):
    """cat's concept has four images, dog's two: batches of two often hold no dog, so no process's
    share names it. One process leaves dog (and its moments) alone then; two must too, so both
    embeddings end where one process puts them (before, the summed zeros let AdamW's momentum
    move dog on every such step)."""
    from shapes_dataset import write_shapes_dataset

    c = tiny_models["sd1"]
    a, b = write_shapes_dataset(tmp_path / "a", n=4, seed=1), write_shapes_dataset(tmp_path / "b", n=2, seed=2)
    cat = api.create_embedding(c, "cat", "cat", 1, tmp_path / "emb")
    dog = api.create_embedding(c, "dog", "dog", 1, tmp_path / "emb")
    toml = tmp_path / "run.toml"
    toml.write_text(f'embedding = "{cat}"\ndata = "{a}"\n[[embeddings]]\npath = "{dog}"\n'
                    f'[[concept]]\npath = "{b}"\nembedding = "dog"\n')
    flags = ["--config", str(toml), "--model", str(tiny_model_dirs["sd1"]), "--steps", "6", "--width", "64",
             "--height", "64", "--batch-size", "2", "--lr", "0.05", "--save-every", "0", "--preview-every", "0",
             "--template", "subject", "--format", "a1111-pt", "--seed", "7", "--quiet"]
    for n in (1, 2):
        argv = ["train", *flags, "--log-dir", str(tmp_path / f"runs{n}"), "--output", str(tmp_path / f"out{n}" / "cat.pt"),
                "--num-processes", str(n)]
        proc = subprocess.run([sys.executable, "-m", "tistudio", *argv], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("cat", "dog"):
        one, two = (load_embedding(tmp_path / f"out{n}" / f"{name}.pt").vectors[0] for n in (1, 2))
        assert not torch.equal(one, load_embedding(tmp_path / "emb" / f"{name}.pt").vectors[0])  # it trained
        torch.testing.assert_close(two, one, rtol=1e-4, atol=1e-6)


def test_batch_must_split_evenly(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(TIStudioError, match="--batch-size 3: must be a multiple of the 2 processes"):
        Distributed.from_env(3, "cpu")


def test_alone_is_a_no_op():
    d = Distributed()
    assert d.is_main and d.reduce([], 1.5, True) == (1.5, True) and d.any_stopped(False) is False
    assert d.device(torch.device("cpu")) == torch.device("cpu")
