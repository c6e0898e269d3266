"""Peak memory and time of loading a full-size SD1.5 checkpoint the way training does.

Writes an SD1.5-sized model with random weights (nothing is downloaded) in the forms real downloads
come in: a single .safetensors file in the original (LDM) layout in fp16 and in fp32, and a diffusers
folder (fp32, like the main branch of the SD1.5 repository). Then, one fresh child process per case
(peak RSS is per process), it loads each the way `tistudio train` does: train.session.load_components
for the run's precision, then the cast prepare() applies to the UNet and text encoders.

    python tools/load_memory.py [--root /tmp/tistudio-load-memory] [--keep] [--json FILE]

About 11 GB of files go under --root (deleted afterwards unless --keep); writing them needs ~5 GB of
memory. Prints a table and writes JSON (default bench/results/load_memory-<time>.json).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tistudio.memory import module_bytes, peak_rss_gib, rss_gib

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
SOURCES = ("single fp16", "single fp32", "diffusers fp32")
FILES = {"single fp16": "sd15-fp16.safetensors", "single fp32": "sd15-fp32.safetensors",
         "diffusers fp32": "sd15-diffusers"}
PRECISIONS = ("bf16", "fp32")
ST_DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "int64": "I64"}


def write_safetensors(tensors: dict, path: Path, dtype=None) -> None:
    """Streams one tensor at a time (safetensors' save_file builds the whole file in memory first,
    which doubles a 4 GB model). Floating tensors are cast to `dtype` on the way out."""
    import torch

    header, offset = {}, 0
    for key, value in tensors.items():
        out_dtype = dtype if dtype is not None and value.is_floating_point() else value.dtype
        size = value.numel() * out_dtype.itemsize
        header[key] = {"dtype": ST_DTYPES[str(out_dtype).removeprefix("torch.")],
                       "shape": list(value.shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as fh:
        fh.write(len(raw).to_bytes(8, "little") + raw)
        for value in tensors.values():
            if dtype is not None and value.is_floating_point():
                value = value.to(dtype)
            fh.write(value.contiguous().view(-1).view(torch.uint8).numpy().tobytes())


def write_models(root: Path) -> None:
    import torch
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    sys.path.insert(0, str(REPO / "tests"))
    from ldm_layout import clip_l_to_ldm, unet_to_ldm, vae_to_ldm

    from tistudio.models.single_file import shipped_config

    config = shipped_config("sd1", "epsilon")
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(config / "unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(config / "vae"))
        text = CLIPTextModel(CLIPTextConfig.from_pretrained(config / "text_encoder"))
    generator = torch.Generator().manual_seed(0)
    modules = {"unet": unet, "vae": vae, "text_encoder": text}
    for name, module in modules.items():
        modules[name] = module = module.to_empty(device="cpu")
        for p in module.parameters():
            p.data.normal_(0, 0.02, generator=generator)
        for b_name, b in module.named_buffers():  # CLIP's position ids must be real positions
            if b_name.endswith("position_ids"):
                b.copy_(torch.arange(b.shape[-1])[None])
    folder = root / FILES["diffusers fp32"]
    shutil.copytree(config, folder)
    weights = {"unet": "diffusion_pytorch_model", "vae": "diffusion_pytorch_model", "text_encoder": "model"}
    for name, module in modules.items():
        write_safetensors(module.state_dict(), folder / name / f"{weights[name]}.safetensors")
    ldm = unet_to_ldm(modules["unet"].state_dict(), modules["unet"].config)
    ldm.update(vae_to_ldm(modules["vae"].state_dict(), modules["vae"].config))
    ldm.update(clip_l_to_ldm(modules["text_encoder"].state_dict(), "cond_stage_model.transformer."))
    write_safetensors(ldm, root / FILES["single fp32"])
    write_safetensors(ldm, root / FILES["single fp16"], torch.float16)


def child(path: str, precision: str) -> dict:
    """Load as `tistudio train` does, in this (fresh) process."""
    from tistudio.config import ModelConfig, TrainConfig
    from tistudio.train.session import DTYPES, load_components

    cfg = TrainConfig(model=ModelConfig(model=path), precision=precision, device="cpu")
    start = time.perf_counter()
    c = load_components(cfg)
    dtype = DTYPES[precision]
    for module in (c.unet, *c.text_encoders):  # what prepare() then does
        if module.dtype != dtype:
            module.to(dtype)
    seconds = time.perf_counter() - start
    size = module_bytes(c.unet, c.vae, *c.text_encoders, buffers=False)
    return {"peak_rss_gib": peak_rss_gib(),
            "rss_after_gib": rss_gib(), "weights_gib": size / 2**30, "seconds": seconds,
            "unet": str(c.unet.dtype), "text_encoder": str(c.text_encoders[0].dtype), "vae": str(c.vae.dtype)}


def main() -> int:
    from tistudio.atomic import write_text

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default="/tmp/tistudio-load-memory")
    ap.add_argument("--keep", action="store_true", help="keep the written model files")
    ap.add_argument("--json", help="where to write the results")
    ap.add_argument("--child", nargs=2, metavar=("PATH", "PRECISION"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(*a.child)), flush=True)
        return 0
    root = Path(a.root)
    root.mkdir(parents=True, exist_ok=True)
    try:
        if not all((root / f).exists() for f in FILES.values()):
            start = time.perf_counter()
            write_models(root)
            print(f"wrote the models in {time.perf_counter() - start:.0f} s", flush=True)
        rows = []
        print("| source | precision | peak RSS GiB | RSS after GiB | weights GiB | seconds |", flush=True)
        print("|---|---|---|---|---|---|", flush=True)
        for source in SOURCES:
            for precision in PRECISIONS:
                proc = subprocess.run([sys.executable, __file__, "--child", str(root / FILES[source]), precision],
                                      capture_output=True, text=True)
                if proc.returncode:
                    sys.stderr.write(proc.stderr)
                    return proc.returncode
                rows.append({"source": source, "precision": precision, **json.loads(proc.stdout.splitlines()[-1])})
                r = rows[-1]
                print(f"| {source} | {precision} | {r['peak_rss_gib']:.2f} | {r['rss_after_gib']:.2f} | "
                      f"{r['weights_gib']:.2f} | {r['seconds']:.1f} |", flush=True)
    finally:
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    out = Path(a.json or REPO / "bench" / "results" / f"load_memory-{time.strftime('%Y%m%d-%H%M%S')}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out, json.dumps({"commit": commit.stdout.strip(), "rows": rows}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
