"""Peak memory and time of one training step on the full-size SD1.5 architecture (random weights,
built from the shipped configs, so nothing is downloaded): TI vs DreamArtist (doubled batch in one
UNet pass) with and without reconstruction. Run one case per process, since peak RSS is per process:

    python tools/dreamartist_memory.py ti|dreamartist|dreamartist-rec [--size 512] [--device cpu|cuda]

Frozen weights in bf16, gradient checkpointing on (UNet; and the VAE decoder with reconstruction).
Prints one line: case, size, device, RSS before training, peak RSS, peak GPU memory, seconds/step.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from tistudio.memory import peak_rss_gib

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def build_sd15(dtype):
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from tistudio.models.components import Components
    from tistudio.models.family import get_family
    from tistudio.models.tokenizer import load_clip_tokenizer

    root = Path(__file__).resolve().parents[1] / "src" / "tistudio" / "models" / "assets" / "configs" / "sd1"
    torch.set_default_dtype(dtype)  # built directly in half precision: no fp32 copy inflates the peak
    unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(root / "unet"))
    text = CLIPTextModel(CLIPTextConfig.from_json_file(root / "text_encoder" / "config.json"))
    torch.set_default_dtype(torch.float32)
    vae = AutoencoderKL.from_config(AutoencoderKL.load_config(root / "vae"))  # the VAE stays fp32
    scheduler = DDPMScheduler.from_config(DDPMScheduler.load_config(root / "scheduler"))
    tok = load_clip_tokenizer()
    return Components(family=get_family("sd1"), prediction="epsilon", tokenizer=tok, text_encoders=[text],
                      pad_ids=[tok.convert_tokens_to_ids("<|endoftext|>")], unet=unet, vae=vae,
                      scheduler=scheduler, name="sd15-random").freeze()


def rss_gib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def main() -> int:
    import torch
    from PIL import Image

    from tistudio import api
    from tistudio.config import DreamArtistConfig, TrainConfig
    from tistudio.train.run import train

    ap = argparse.ArgumentParser()
    ap.add_argument("case", choices=["ti", "dreamartist", "dreamartist-rec"])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=2)
    a = ap.parse_args()
    c = build_sd15(torch.bfloat16)
    work = Path(tempfile.mkdtemp(prefix="da-mem-"))
    (work / "data").mkdir()
    Image.effect_noise((a.size, a.size), 64).convert("RGB").save(work / "data" / "a photo.png")
    pos, _ = api.create_dreamartist_pair(c, "tok", "person", 3, "*", 6, work / "emb")
    da = DreamArtistConfig(cfg="3", reconstruction=a.case == "dreamartist-rec")
    cfg = TrainConfig(embedding=str(pos), data=str(work / "data"), steps=a.steps, width=a.size, height=a.size,
                      save_every=0, preview_every=0, log_dir=str(work / "runs"), lr="0.003", template="subject",
                      method="ti" if a.case == "ti" else "dreamartist", dreamartist=da, precision="bf16",
                      gradient_checkpointing=True, device=a.device, output=str(work / "out" / "tok.pt"))
    before = rss_gib()
    start = time.perf_counter()
    train(cfg, components=c, progress=False)
    seconds = (time.perf_counter() - start) / a.steps
    peak = peak_rss_gib()
    gpu = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")
    print(f"{a.case} {a.size}px {a.device}: rss_before={before:.2f}GiB peak_rss={peak:.2f}GiB "
          f"peak_gpu={gpu:.2f}GiB seconds_per_step~{seconds:.1f} (incl. latent caching)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
