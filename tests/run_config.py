"""Helpers the training tests share: a quick deterministic config (tiny model, 64 px, no plot) and a
loss on fixed triples that compares across vectors; what a run wrote (its loss.csv steps, a folder's files)."""
import csv
from pathlib import Path

from tistudio.config import TrainConfig


def quick_config(emb, data, root, **kw) -> TrainConfig:
    base = dict(embedding=str(emb), data=str(data), steps=6, width=64, height=64, save_every=2,
                preview_every=0, log_dir=str(root / "runs"), lr="0.01", template="none",
                latent_sampling="deterministic", output=str(root / "out" / "final.pt"), plot=False)
    base.update(kw)
    return TrainConfig(**base)


def spied_run(cfg, c, record):
    """Train `cfg` through the loop with `record(mb, per_sample_loss)` called on every micro-batch
    (the objective's loss, as the loop weights it); returns the run's Setup and its loss.csv losses."""
    from tistudio.train.loop import run_loop
    from tistudio.train.session import prepare

    s, state = prepare(cfg, components=c, progress=False)
    plain = s.objective.loss

    def spy(mb):
        per_sample = plain(mb)
        record(mb, per_sample)
        return per_sample
    s.objective.loss = spy
    try:
        run_loop(s, state, progress=False)
        s.run.flush_loss()
    finally:
        s.lock.release()
    with open(s.run.root / "loss.csv", newline="") as fh:
        return s, [float(r["loss"]) for r in csv.DictReader(fh)]


def dataset_latents(c, folder, size: int = 64):
    """Scaled posterior-mean latents of every PNG in `folder`, in name order."""
    import torch

    from tistudio.data.dataset import load_image

    with torch.no_grad():
        latents = torch.stack([c.vae.encode(load_image(p, size, size)[None]).latent_dist.mean[0]
                               for p in sorted(folder.glob("*.png"))])
    return latents * c.vae_scale


def fixed_triple_loss(c, latents, predict, seed: int = 0) -> float:
    """Mean loss on fixed (latent, timestep, noise) triples, so it compares across vectors.
    `predict(noisy, timesteps, noise, target)` returns the model output to score."""
    import torch

    from tistudio.models.denoiser import noisy_and_target, per_sample_mse

    gen = torch.Generator().manual_seed(seed)
    total = 0.0
    with torch.no_grad():
        for t in (100, 300, 500, 700, 900):
            noise = torch.randn(latents.shape, generator=gen)
            ts = torch.full((latents.shape[0],), t)
            noisy, target = noisy_and_target(c, latents, noise, ts)
            total += per_sample_mse(predict(noisy, ts, noise, target), target).mean().item()
    return total / 5


def steps_in(run: Path) -> list[int]:
    with open(run / "loss.csv", newline="") as fh:
        return [int(r["step"]) for r in csv.DictReader(fh)]


def tree(folder: Path) -> dict:
    """Every file under `folder` with its bytes, to show that nothing changed."""
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()} if folder.exists() else {}
