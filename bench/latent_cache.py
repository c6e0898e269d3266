"""Latent caching throughput: images/s of our caching (data/latent_encode.py through LatentCache.build,
with the settings `--profile balanced` picks on this machine) against a plain `vae.encode` loop, and the
alternatives those settings were chosen from, on the SD1.5 VAE architecture with random weights (built
from the shipped config: no download) at 512².

    .venv/bin/python bench/latent_cache.py              # 3 images per variant, a few minutes on 2 cores
    .venv/bin/python bench/latent_cache.py --images 2 --size 256
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 .venv/bin/python bench/latent_cache.py --size 256  # as AVX2

Each variant encodes the same images after one warm-up call (oneDNN builds its kernels on the first).
Reported: images/s (wall), CPU seconds per image (all threads: what other jobs on a shared machine
barely change) and the largest difference of its posterior means from the fp32 plain loop's, beside
the posterior's median std (the noise `once`/`random` sampling adds anyway). JSON in bench/results/."""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from report import machine, save
from tistudio.config import TrainConfig
from tistudio.data.dataset import make_records
from tistudio.data.latent_cache import LatentCache
from tistudio.data.latent_encode import vae_encoder
from tistudio.models.single_file import shipped_config
from tistudio.train import speed

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def random_vae():
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL.from_config(AutoencoderKL.load_config(str(shipped_config("sd1", "epsilon") / "vae"))).eval()


def images(folder: Path, n: int, size: int) -> list:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"{i:02d}.png"
        Image.fromarray((rng.random((size, size, 3)) * 255).astype(np.uint8)).save(path)
        paths.append(path)
    return make_records(paths, width=size, height=size)


def timed(fn) -> tuple[float, float, object]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def plain_loop(vae, records, size):
    """What a script without a cache does: vae.encode one image at a time, fp32."""
    from tistudio.data.dataset import load_image

    with torch.no_grad():
        return torch.cat([vae.encode(load_image(r.path, size, size)[None]).latent_dist.mean for r in records])


def ours(vae, records, size, precision, batch, channels_last=False):
    encode = vae_encoder(vae, torch.device("cpu"), DTYPES[precision], channels_last)
    encode(torch.zeros(1, 3, size, size))  # warm-up
    run = lambda: LatentCache.build(records, encode, width=size, height=size, mode="deterministic",  # noqa: E731
                                    batch_size=batch, progress=False).mean[:, 0]
    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--bf16", action="store_true", help="time the bf16 variants also where bf16 is not native (emulated: ~100x slower per convolution)")
    args = parser.parse_args()
    features = speed.cpu_features()
    chosen = speed.resolve(TrainConfig(), torch.device("cpu"), speed.LARGE_UNET, features=features)
    kind, cap = speed.cpu_kind(features), speed.cap_note()
    print(f"CPU: {kind}{f' ({cap})' if cap else ''}, {torch.get_num_threads()} threads; balanced picks VAE {chosen.vae_precision}, "
          f"{chosen.encode_batch} per call", flush=True)
    vae = random_vae()
    with tempfile.TemporaryDirectory() as tmp:
        records = images(Path(tmp), args.images, args.size)
        with torch.no_grad():
            vae.encode(torch.zeros(1, 3, args.size, args.size))  # warm-up for the plain loop
            std = float(vae.encode(torch.zeros(1, 3, args.size, args.size)).latent_dist.std.median())
        variants = [("plain vae.encode loop, fp32", lambda: plain_loop(vae, records, args.size))]
        mine = (chosen.vae_precision, chosen.encode_batch, chosen.vae_channels_last)
        variants.append((f"ours (balanced: {mine[0]}, batch {mine[1]}{', channels-last' if mine[2] else ''})",
                         ours(vae, records, args.size, *mine)))
        alternatives = [("fp32", 1, False), ("fp32", 1, True), ("fp32", 2, True)]
        if args.bf16 or speed.native_half(torch.device("cpu"), features) == "bf16":
            alternatives += [("bf16", 1, False), ("bf16", 1, True), ("bf16", 2, True)]
        for precision, batch, cl in alternatives:
            if (precision, batch, cl) != mine:
                variants.append((f"ours {precision}, batch {batch}{', channels-last' if cl else ''}",
                                 ours(vae, records, args.size, precision, batch, cl)))
        rows, reference = [], None
        for name, fn in variants:
            print(f"running {name} ...", flush=True)
            wall, cpu, latents = timed(fn)
            latents = latents.float()
            reference = latents if reference is None else reference
            rows.append({"name": name, "images_per_second": len(records) / wall, "seconds_per_image": wall / len(records),
                         "cpu_seconds_per_image": cpu / len(records),
                         "max_abs_diff": float((latents - reference).abs().max()),
                         "max_abs_reference": float(reference.abs().max())})
    base = rows[0]
    head = f"{'variant':44} {'img/s':>7} {'s/img':>7} {'cpu s/img':>9} {'vs plain':>8} {'max |diff|':>10}"
    print(head + "\n" + "-" * len(head))
    for r in rows:
        print(f"{r['name']:44} {r['images_per_second']:7.3f} {r['seconds_per_image']:7.2f} "
              f"{r['cpu_seconds_per_image']:9.2f} {base['cpu_seconds_per_image'] / r['cpu_seconds_per_image']:7.2f}x "
              f"{r['max_abs_diff']:10.2e}")
    print(f"(latent means up to {base['max_abs_reference']:.2f}; posterior median std {std:.2f}; "
          f"speed-up by CPU seconds; load average {Path('/proc/loadavg').read_text().split()[0]})")
    path = save("latent-cache", {"machine": machine(), "size": args.size,
                                 "images": args.images, "chosen": chosen.describe(), "posterior_std": std,
                                 "load_average": Path("/proc/loadavg").read_text().split()[:3], "results": rows})
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
