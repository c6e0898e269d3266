"""The small deterministic training config the reliability tests share (tiny model, 64 px, no plot)."""
from tistudio.config import TrainConfig


def quick_config(emb, data, root, **kw) -> TrainConfig:
    base = dict(embedding=str(emb), data=str(data), steps=6, width=64, height=64, save_every=2,
                preview_every=0, log_dir=str(root / "runs"), lr="0.01", template="none",
                latent_sampling="deterministic", output=str(root / "out" / "final.pt"), plot=False)
    base.update(kw)
    return TrainConfig(**base)
