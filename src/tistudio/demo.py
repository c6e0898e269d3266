"""`make demo`: the main job end to end on a model that needs no download.

Until the toy world's trained base model is bundled, this uses a tiny random SD1-shaped model built
in code: it proves every step (create, cache, train, snapshots, previews, formats, generate) in about
a minute, but a random model cannot learn a concept, so the images are noise."""
from __future__ import annotations

import sys
import time
from pathlib import Path

OUT = Path("demo-output")


def main() -> int:
    from . import api
    from .config import TrainConfig
    from .generate.sample import GenerateOptions
    from .models.tiny import build_tiny
    from .toy_data import write_shapes_dataset

    started = time.perf_counter()
    OUT.mkdir(exist_ok=True)
    print("1/4 building a tiny SD1-shaped model in code (no download)")
    c = build_tiny("sd1")
    data = write_shapes_dataset(OUT / "data", n=8, size=64)
    print(f"2/4 creating embedding 'demo-square' from init text 'square' ({data} holds 8 images)")
    emb = api.create_embedding(c, "demo-square", "square", 2, OUT / "embeddings", overwrite=True)
    print("3/4 training 40 steps")
    cfg = TrainConfig(embedding=str(emb), data=str(data), steps=40, width=64, height=64, lr="0.02",
                      save_every=20, preview_every=20, preview_steps=8, log_dir=str(OUT / "runs"),
                      template="subject_filewords")
    result = api.train(cfg, components=c)
    print("4/4 generating with the trained embedding")
    images = api.generate(c, GenerateOptions("a photo of demo-square", steps=8, width=64, height=64, n=2),
                          OUT / "embeddings", OUT / "images")
    print(f"\ndone in {time.perf_counter() - started:.0f} s; final loss {result.last_loss:.4f}")
    for path in result.outputs:
        print(f"  embedding:   {path}")
    print(f"  run folder:  {result.run_dir} (loss.csv, config.toml, embeddings/, images/)")
    for path in images:
        print(f"  generated:   {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
