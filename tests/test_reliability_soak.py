"""Long runs (slow tier): 10,000 steps on the tiny SD1 model keep resident memory flat (within 5%
after a 1,000-step warm-up) and the run folder bounded (--keep-last 3 over 100 save points)."""
from __future__ import annotations

import csv

import pytest

from tistudio import api
from tistudio.config import TrainConfig
from tistudio.memory import rss_gib
from tistudio.train import session as session_mod

STEPS, WARM_UP, EVERY = 10_000, 1_000, 500


def rss_mib() -> float:
    return rss_gib() * 1024


class MemoryCurve:
    def __init__(self):
        self.points: list[tuple[int, float]] = []

    def after_step(self, step, loss, lr):
        if step % EVERY == 0:
            self.points.append((step, rss_mib()))

    def at_end(self, result):
        pass


@pytest.mark.slow
def test_ten_thousand_steps_keep_memory_flat_and_disk_bounded(tiny_models, tmp_path, monkeypatch):
    from shapes_dataset import write_shapes_dataset
    from tistudio.train.run import train

    c = tiny_models["sd1"]
    data = write_shapes_dataset(tmp_path / "data", n=4, size=32)
    emb = api.create_embedding(c, "tok", "cat", 1, tmp_path / "emb")
    curve = MemoryCurve()
    real_prepare = session_mod.prepare

    def prepare(*a, **kw):
        s, st = real_prepare(*a, **kw)
        s.hooks.append(curve)
        return s, st

    monkeypatch.setattr("tistudio.train.run.prepare", prepare)
    cfg = TrainConfig(embedding=str(emb), data=str(data), steps=STEPS, width=32, height=32, save_every=100,
                      preview_every=2500, preview_steps=2, log_dir=str(tmp_path / "runs"), lr="0.005",
                      template="none", output=str(tmp_path / "final.pt"), plot=False, keep_last=3)
    result = train(cfg, components=c, progress=False)
    assert result.step == STEPS
    print("\nstep  RSS MiB\n" + "\n".join(f"{s:>5} {m:8.1f}" for s, m in curve.points))
    after = [m for s, m in curve.points if s >= WARM_UP]
    assert (max(after) - min(after)) / min(after) <= 0.05, curve.points
    run = tmp_path / "runs" / "tok"
    snapshots = [p for p in (run / "embeddings").iterdir() if p.name.split("-")[-1][:1].isdigit()]
    assert sorted(p.name for p in snapshots) == sorted(f"tok-{s}{ext}" for s in (9800, 9900, 10000)
                                                       for ext in (".pt", ".safetensors"))
    rows = list(csv.reader((run / "loss.csv").open()))
    assert len(rows) == STEPS + 1
    size = sum(p.stat().st_size for p in run.rglob("*") if p.is_file()) / 2**20
    print(f"run folder: {size:.1f} MiB")
    assert size < 5
