"""Crash safety: a `tistudio train` process is killed (SIGKILL, at random moments and at the worst
places: between a snapshot and state.pt, with state.pt half-committed) or stopped (SIGTERM/SIGINT),
then resumed with `--resume`, until it completes. The final vectors, snapshots, previews and loss.csv
must equal an uninterrupted run's bit for bit (CPU, deterministic algorithms), and after every kill
every file in the run folder must read back whole (only hidden temporaries may be partial, and the
next start removes them)."""
from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path

import pytest
import torch
from PIL import Image

from tistudio.atomic import is_temporary
from tistudio.embedding.formats import load_embedding

# The CLI with deterministic algorithms on. TIS_KILL=NAME:before|after:N makes the child SIGKILL
# itself around the N-th atomic rename onto a file whose name starts with NAME.
pytestmark = pytest.mark.e2e  # the process itself is what is tested

CHILD = r"""
import os, signal, sys
import torch
torch.use_deterministic_algorithms(True)
spec = os.environ.get("TIS_KILL")
if spec:
    name, when, nth = spec.split(":")
    real, seen = os.replace, [0]
    def replace(src, dst):
        hit = os.path.basename(str(dst)).startswith(name)
        if hit:
            seen[0] += 1
        if hit and seen[0] == int(nth) and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        real(src, dst)
        if hit and seen[0] == int(nth) and when == "after":
            os.kill(os.getpid(), signal.SIGKILL)
    os.replace = replace
from tistudio.cli.main import main
sys.exit(main(sys.argv[1:]))
"""
MARK = b"training tok"


def train_args(model: Path, emb: Path, data: Path, root: Path, steps: int) -> list[str]:
    return ["train", "--model", str(model), "--embedding", str(emb), "--data", str(data),
            "--steps", str(steps), "--width", "64", "--height", "64", "--lr", "0.02",
            "--template", "subject_filewords", "--save-every", "2", "--preview-every", "3",
            "--preview-steps", "2", "--png-embeddings", "--keep-last", "3", "--flip", "--shuffle-tags",
            "--latent-sampling", "random", "--no-plot", "--log-dir", str(root / "runs"),
            "--output", str(root / "out" / "final.pt")]


class Child:
    """A training subprocess whose stderr is watched for the start of the training loop."""

    def __init__(self, args: list[str], env: dict | None = None):
        self.proc = subprocess.Popen([sys.executable, "-c", CHILD, *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env={**os.environ, **(env or {})})
        self.training = threading.Event()
        self.started_training = None
        self.err = b""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        while chunk := self.proc.stderr.read1(4096):
            self.err += chunk
            if not self.training.is_set() and MARK in self.err:
                self.started_training = time.monotonic()
                self.training.set()

    def wait(self, timeout=300) -> tuple[int, str, str]:
        out = self.proc.stdout.read()
        code = self.proc.wait(timeout)
        self._reader.join(10)
        return code, out.decode(), self.err.decode(errors="replace")


def check_run_folder(run: Path) -> list[Path]:
    """Every visible file reads back whole; returns the temporaries found (allowed to be partial)."""
    temps = []
    for path in sorted(p for p in run.rglob("*") if p.is_file()):
        if is_temporary(path):
            temps.append(path)
        elif path.parent.name in ("embeddings", "image_embeddings"):
            assert torch.isfinite(load_embedding(path).vectors[0]).all(), path
        elif path.suffix == ".png":
            with Image.open(path) as img:
                img.load()
        elif path.name == "state.pt":
            state = torch.load(path, map_location="cpu", weights_only=True)
            assert state["step"] >= 0 and torch.isfinite(state["vectors"]["tok"][0]).all()
        elif path.suffix == ".csv":
            rows = list(csv.reader(path.open()))
            assert rows and all(len(r) == len(rows[0]) for r in rows), path
            steps = [int(r[0]) for r in rows[1:]]
            assert steps == sorted(set(steps)), path
        elif path.suffix == ".toml":
            tomllib.loads(path.read_text())
        elif path.suffix == ".json":
            json.loads(path.read_text())
    return temps


def saved_step(run: Path) -> int:
    state = run / "state.pt"
    return int(torch.load(state, weights_only=True)["step"]) if state.is_file() else 0


def interrupt_chain(tiny_model_dirs, dataset, tmp_path, plan: list[str], steps: int, seed: int = 0) -> list[str]:
    """Run the reference and, beside it, the interrupted run: one child per entry of `plan`
    ("random" SIGKILL, "SIGTERM"/"SIGINT" after a random delay, or a TIS_KILL spec), then one
    to finish. Returns a line per interruption describing where it landed."""
    from tistudio import api
    from tistudio.models.load import load_model

    model = tiny_model_dirs["sd1"]
    emb = api.create_embedding(load_model(str(model)), "tok", "cat", 2, tmp_path / "emb")
    ref_root, kill_root = tmp_path / "ref", tmp_path / "killed"
    ref = Child(train_args(model, emb, dataset, ref_root, steps))
    run = kill_root / "runs" / "tok"
    rng = random.Random(seed)
    seconds_per_step = 0.1
    if "random" in plan:  # time the reference first, to aim the kills along the whole run
        assert ref.proc.wait(600) == 0 and ref.started_training
        seconds_per_step = (time.monotonic() - ref.started_training) / steps
    notes = []
    for k, entry in enumerate(plan):
        resume = ["--resume", str(run)] if (run / "config.toml").is_file() else []
        args = train_args(model, emb, dataset, kill_root, steps) + resume
        env = {"TIS_KILL": entry} if ":" in entry else None
        child = Child(args, env)
        if env is None:
            assert child.training.wait(240), child.err.decode(errors="replace")
            # Kill k aims near step steps*(k+1)/(n+1), so the kills spread over the whole run
            # (steps, saves, previews, the end); a stop request comes as training starts.
            target = steps * (k + 1) / (len(plan) + 1)
            ahead = max(0.0, target - saved_step(run)) * seconds_per_step
            time.sleep(ahead * rng.uniform(0.5, 1.5) if entry == "random" else 0)
            child.proc.send_signal({"random": signal.SIGKILL, "SIGTERM": signal.SIGTERM,
                                    "SIGINT": signal.SIGINT}[entry])
        code, out, err = child.wait()
        if entry in ("SIGTERM", "SIGINT"):
            assert code == 130 and "interrupted at step" in out, (code, out, err[-2000:])
            stopped = int(out.split("interrupted at step ")[1].split(",")[0])
            assert saved_step(run) == stopped and load_embedding(kill_root / "out" / "final.pt").step == stopped
        else:
            assert code == -signal.SIGKILL, (entry, code, out, err[-2000:])
        temps = check_run_folder(run)
        notes.append(f"{entry}: state.pt at step {saved_step(run)}, "
                     f"{'mid-write of ' + ', '.join(t.name for t in temps) if temps else 'no write in flight'}")
    final = Child(train_args(model, emb, dataset, kill_root, steps) + ["--resume", str(run)])
    code, out, err = final.wait()
    assert code == 0 and f"completed at step {steps}" in out, (code, out, err[-2000:])
    code, out, err = ref.wait()
    assert code == 0, err[-2000:]

    assert not check_run_folder(run), "temporaries left after the resumed run finished"
    assert not [p for p in (kill_root / "out").iterdir() if is_temporary(p)]
    for name in ("final.pt", "final.safetensors"):
        a = load_embedding(ref_root / "out" / name)
        b = load_embedding(kill_root / "out" / name)
        assert a.step == b.step == steps and torch.equal(a.vectors[0], b.vectors[0]), name
    ref_run = ref_root / "runs" / "tok"
    for folder in ("embeddings", "images", "image_embeddings"):
        names = sorted(p.name for p in (ref_run / folder).iterdir())
        assert names == sorted(p.name for p in (run / folder).iterdir()), folder
        for name in names:
            if folder == "images":  # previews: the same pixels and parameters, byte for byte
                assert (ref_run / folder / name).read_bytes() == (run / folder / name).read_bytes(), name
            else:  # safetensors headers list metadata in hash order, so compare what they hold
                a, b = load_embedding(ref_run / folder / name), load_embedding(run / folder / name)
                assert torch.equal(a.vectors[0], b.vectors[0]) and (a.step, a.meta) == (b.step, b.meta), name
    assert (ref_run / "loss.csv").read_text() == (run / "loss.csv").read_text()
    return notes


def test_killed_between_snapshot_and_state_and_stopped_resumes_exactly(tiny_model_dirs, dataset, tmp_path):
    """Fast tier: SIGKILL right after the step-4 snapshot is in place but before state.pt (the
    snapshot is newer than the state: state.pt wins and the snapshot is rewritten identically),
    SIGKILL with the new state.pt written but not yet renamed, then a graceful SIGTERM."""
    notes = interrupt_chain(tiny_model_dirs, dataset, tmp_path,
                            ["tok-4.safetensors:after:1", "state.pt:before:2", "SIGTERM"], steps=16)
    assert notes[0].startswith("tok-4.safetensors:after:1: state.pt at step 2")
    assert notes[1].startswith("state.pt:before:2: state.pt at step 4, mid-write of .state.pt.")


@pytest.mark.slow
def test_twenty_random_sigkills_resume_bit_identically(tiny_model_dirs, dataset, tmp_path):
    plan = ["random"] * 10 + ["SIGINT"] + ["random"] * 10
    notes = interrupt_chain(tiny_model_dirs, dataset, tmp_path, plan, steps=90, seed=9)
    print("\n".join(notes))
    assert sum(n.startswith("random") for n in notes) == 20
