"""Helpers the training tests share: a quick deterministic config (tiny model, 64 px, no plot) and a
loss on fixed triples that compares across vectors."""
from tistudio.config import TrainConfig


def quick_config(emb, data, root, **kw) -> TrainConfig:
    base = dict(embedding=str(emb), data=str(data), steps=6, width=64, height=64, save_every=2,
                preview_every=0, log_dir=str(root / "runs"), lr="0.01", template="none",
                latent_sampling="deterministic", output=str(root / "out" / "final.pt"), plot=False)
    base.update(kw)
    return TrainConfig(**base)


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
