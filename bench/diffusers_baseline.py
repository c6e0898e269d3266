"""Our training step against the diffusers Textual Inversion example's, side by side in one run.

    .venv/bin/python bench/diffusers_baseline.py                  # 512², about 10 minutes on 2 cores
    .venv/bin/python bench/diffusers_baseline.py --size 256 --steps 2 --only example
    .venv/bin/python bench/diffusers_baseline.py --both-modes     # also the example's other mode

The example is compared in its best mode for this CPU kind (train/speed.py cpu_kind): bf16 where
bf16 is native (AMX, AVX-512 BF16), fp32 elsewhere, where torch emulates bf16 (on an AVX2 Zen 3 its
bf16 step did not finish in 36 minutes). --both-modes runs the other one too.

The project states its speed targets relative to diffusers' examples/textual_inversion/textual_inversion.py.
That script needs downloaded weights, torchvision and a dataset folder, none of which this machine
has, so `ExampleStep` below re-enacts its training step in our own code, on the same SD1.5
architecture with random weights (bench/arch.py) that our own benchmark uses. What the example does
per step, read at diffusers commit 58eb52c0 (S = https://github.com/huggingface/diffusers/blob/
58eb52c0803ea9af3abec60841c2a093bdf1f951/examples/textual_inversion/textual_inversion.py):

- Precision: `--mixed_precision` defaults to "no" (S#L349-L358) and is handed to `Accelerator`
  (S#L603-L608). The frozen UNet and VAE are cast to the weight dtype, fp32 or bf16 (S#L794-L804);
  the text encoder is never cast and stays fp32, because its token-embedding matrix is the trained
  parameter. Only the text encoder goes through `accelerator.prepare` (S#L788-L792), and accelerate
  wraps a prepared model's forward in autocast and converts its outputs to fp32 (accelerate 1.15.0,
  src/accelerate/accelerator.py L1824-L1835; on a CPU bf16 is always native, L590-L591; the context
  is `torch.autocast(device_type, bfloat16)`, src/accelerate/utils/modeling.py L2078-L2110). So in
  bf16 mode the text encoder runs under CPU autocast, the UNet runs in plain bf16 without autocast,
  and the text features are cast to the weight dtype before the UNet (S#L888-L889).
- Trainable parameter: the placeholder token is added to the tokenizer, the text encoder's embedding
  matrix is resized by one row per vector and the new rows copy the initializer token's (S#L692-L699);
  the encoder layers, final layer norm and position embedding are frozen, the token embedding is not
  (S#L701-L708). AdamW gets the whole input-embedding matrix (S#L740-L747) with lr 1e-4
  (S#L290-L295), betas 0.9/0.999, eps 1e-8 and weight decay 1e-2 (S#L328-L331): the gradient is a
  dense 49,409 x 768 matrix, Adam keeps two more, and the decay touches every row.
- After every optimizer step every row except the new tokens' is written back from a clone of the
  matrix taken before training (S#L866-L867, S#L910-L917).
- Per step (S#L872-L908): the batch's pixels are cast to the weight dtype and encoded by the VAE
  every step, a latent_dist sample times the scaling factor (no latent cache; the VAE's weights need
  no gradient, so no graph is kept); noise like the latents; a uniform timestep in [0, 1000); DDPM
  add_noise; UNet; MSE of the fp32 prediction against the fp32 target (noise for epsilon models);
  `accelerator.backward` (a plain backward in bf16: no grad scaler); optimizer step, constant LR
  scheduler step (S#L302-L309), zero_grad (set_to_none).
- Data per step (TextualInversionDataset, S#L507-L590, num_workers 0): open the image, pick a
  template, tokenize with max-length padding, bicubic resize to the resolution, random horizontal
  flip (p 0.5), scale to [-1, 1] fp32, CHW.
- Off by default: gradient checkpointing (a store_true flag, S#L285-L289, applied at S#L710-L715),
  xformers (S#L434-L435), so the UNet keeps diffusers' default attention processor, SDPA
  (AttnProcessor2_0: src/diffusers/models/attention_processor.py#L300-L309 at the same commit);
  the UNet stays in eval mode (as loaded), the text encoder is put in train mode (CLIP's dropout is 0).
- Defaults that differ from the targets' measurement: batch 16 (S#L269-L272) and one vector
  (S#L203-L208); the targets are for batch 1, and both sides here use batch 1 and one vector.

Left out of the re-enactment, all outside the step or negligible at 512²: decoding the image file
(the images are held in memory as PIL images), logging, checkpoint saving, validation. Models are
built directly in the weight dtype (bench/arch.py); the real script loads fp32 weights before the
cast, so its whole-process peak is higher than "peak GB" here by up to the fp32 weights (~4.3 GB for
SD1.5). "step GB" (peak resident memory during the timed steps) is the like-for-like figure.

Every variant runs in its own child process: "example fp32" and "example bf16" through this file's
--child entry, ours through bench/harness.py (the real session.prepare + run_loop path) with the
default balanced profile and with --profile low-memory. All children get the CLI's OpenMP settings
(train/speed.py OPENMP_ENV; giving them to the example too keeps its idle threads' spinning out of
the comparison). The
table gives wall and CPU seconds per step (median after one warm-up step; CPU seconds of all
threads barely change when other jobs share the machine), whole-process and during-step peak
memory, the reference (the example's best mode) divided by each variant (step time, and during-step
memory), and the time to the first step on 8 images: building the model (loading, with real
weights), set-up, latent caching for ours (all 8 images first here, so that the timed steps are the
steady state's; a run encodes each as its first step needs it: bench/first_step.py), and the first
step (the example encodes inside it)."""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time

from harness import _PeakSampler, run_case, run_child
from tistudio.memory import peak_rss_gib, rss_gib
from tistudio.train import speed
from report import fmt, machine, rows_table, save

INITIALIZER = "painting"
# Our own captions around the placeholder (the example draws from a fixed list the same way).
TEMPLATES = ("a painting in the style of {}", "an artwork by {}", "a picture, {} style", "{}, a landscape")
EXAMPLE_MODES = {"example fp32": "float32", "example bf16": "bfloat16"}
OURS = {"ours balanced": {}, "ours low-memory": {"profile": "low-memory"}}
IMAGES = 8   # dataset size of both sides: the time to the first step includes ours caching them


def best_example_mode(features: frozenset[str] | None = None) -> str:
    """The example's faster mode on this CPU kind: bf16 only where the CPU computes it natively."""
    import torch

    native = speed.native_half(torch.device("cpu"), speed.cpu_features() if features is None else features)
    return "example bf16" if native == "bf16" else "example fp32"


class ExampleStep:
    """The diffusers example's training set-up and step, re-enacted (see the module docstring).

    Takes Components and changes them the way the script changes its models: the text encoder is
    made fp32 and gets one embedding row for the placeholder token, the UNet and VAE are cast to
    `weight_dtype`. Pass Components nobody else uses."""

    def __init__(self, c, weight_dtype, size: int, n_images: int = 2, seed: int = 0, lr: float = 1e-4):
        import numpy as np
        import torch
        from PIL import Image

        torch.manual_seed(seed)
        self.rng = random.Random(seed)
        self.c, self.dtype, self.size = c, weight_dtype, size
        self.autocast = weight_dtype != torch.float32
        self.te = c.text_encoders[0].float()
        old_rows = self.te.get_input_embeddings().weight.shape[0]
        # One new row; transformers' mean-resizing initialisation is skipped because the row is
        # overwritten with the initializer's at once, as the example does.
        self.te.resize_token_embeddings(old_rows + 1, mean_resizing=False)
        self.embedding = self.te.get_input_embeddings().weight
        self.new_id = old_rows
        self.init_id = c.tokenizer(INITIALIZER, add_special_tokens=False).input_ids[0]
        with torch.no_grad():
            self.embedding[self.new_id] = self.embedding[self.init_id]
        self.te.requires_grad_(False)
        self.embedding.requires_grad_(True)
        self.te.train()
        c.unet.to(dtype=weight_dtype)
        c.vae.to(dtype=weight_dtype)
        self.optimizer = torch.optim.AdamW([self.embedding], lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2)
        self.original = self.embedding.detach().clone()
        self.keep = torch.ones(self.embedding.shape[0], dtype=torch.bool)
        self.keep[self.new_id] = False
        pixels = np.random.default_rng(seed).integers(0, 256, (n_images, size, size, 3), dtype=np.uint8)
        self.images = [Image.fromarray(p) for p in pixels]

    def _example(self):
        """One dataset item: caption ids with the placeholder's id, pixels in [-1, 1] (1, 3, H, W)."""
        import numpy as np
        import torch
        from PIL import Image

        caption = self.rng.choice(TEMPLATES).format(INITIALIZER)
        ids = self.c.tokenizer(caption, padding="max_length", truncation=True,
                               max_length=self.c.tokenizer.model_max_length, return_tensors="pt").input_ids
        # The tokenizer is shared and left unchanged: the initializer word stands in for the new token.
        ids[ids == self.init_id] = self.new_id
        image = self.rng.choice(self.images).resize((self.size, self.size), resample=Image.BICUBIC)
        if self.rng.random() < 0.5:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        pixels = (np.asarray(image, dtype=np.float32) / 127.5 - 1.0).transpose(2, 0, 1)
        return ids, torch.from_numpy(np.ascontiguousarray(pixels))[None]

    def _encode_text(self, ids):
        import torch

        if not self.autocast:
            return self.te(ids)[0]
        with torch.autocast("cpu", dtype=self.dtype):
            hidden = self.te(ids)[0]
        return hidden.float()  # what accelerate's output conversion does

    def step(self) -> float:
        import torch
        import torch.nn.functional as F

        ids, pixels = self._example()
        sched = self.c.scheduler
        latents = self.c.vae.encode(pixels.to(self.dtype)).latent_dist.sample().detach() * self.c.vae_scale
        noise = torch.randn_like(latents)
        t = torch.randint(0, sched.config.num_train_timesteps, (latents.shape[0],)).long()
        noisy = sched.add_noise(latents, noise, t)
        context = self._encode_text(ids).to(self.dtype)
        pred = self.c.unet(noisy, t, context).sample
        target = noise if self.c.prediction == "epsilon" else sched.get_velocity(latents, noise, t)
        loss = F.mse_loss(pred.float(), target.float(), reduction="mean")
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            self.embedding[self.keep] = self.original[self.keep]
        return loss.item()


def measure_example(spec: dict) -> dict:
    """In the child: build SD1.5 in the mode's weight dtype, set up, time warm-up + `steps` steps."""
    import torch

    from arch import build_random

    dtype = getattr(torch, spec["dtype"])
    built = time.perf_counter()
    step = ExampleStep(build_random("sd1", dtype), dtype, spec["size"], n_images=spec.get("images", IMAGES))
    built = time.perf_counter() - built
    rss_ready = rss_gib()
    times, cpu_times, losses = [], [], []
    sampler = _PeakSampler()
    for _ in range(spec["warmup"] + spec["steps"]):
        wall, cpu = time.perf_counter(), time.process_time()
        losses.append(step.step())
        times.append(time.perf_counter() - wall)
        cpu_times.append(time.process_time() - cpu)
    train_peak = sampler.stop()
    w = spec["warmup"]
    return {"seconds_per_step": statistics.median(times[w:]), "cpu_seconds_per_step": statistics.median(cpu_times[w:]),
            "step_times": times, "losses": losses,
            "peak_rss_gb": peak_rss_gib(),
            "rss_ready_gb": rss_ready, "train_peak_gb": train_peak, "build_seconds": built,
            "first_step_seconds": built + times[0], "threads": torch.get_num_threads()}


def run_example(name: str, size: int, steps: int, timeout: float = 3600) -> dict:
    spec = {"dtype": EXAMPLE_MODES[name], "size": size, "steps": steps, "warmup": 1, "images": IMAGES}
    result = run_child([__file__, "--child", json.dumps(spec)], timeout=timeout)
    return result if "error" in result else {"spec": spec, **result}


def run_ours(name: str, size: int, steps: int) -> dict:
    # One vector, as the example's default; FLOP counting is left out (it adds a step). Every latent
    # is encoded before the first step, so the timed steps are the steady state's, not the first
    # epoch's (which encode their images: bench/first_step.py times that start).
    case = {"model": "sd1", "size": size, "steps": steps, "method": "ti", "options": OURS[name],
            "vectors": 1, "images": IMAGES, "flops": False, "tensor_peak": False, "up_front": True}
    return {"case": case, **run_case(case)}


def table(rows: list[dict], reference: str) -> str:
    ref = next((r for r in rows if r["name"] == reference and "error" not in r), None)
    head = (f"{'variant':16} {'wall s/step':>11} {'CPU s/step':>10} {'peak GB':>8} {'step GB':>8} "
            f"{'ref ÷ this':>10} {'(CPU)':>6} {'mem this/ref':>12} {'1st step s':>10}  losses")

    def line(r: dict) -> str:
        wall = ref and ref["seconds_per_step"] / r["seconds_per_step"]
        cpu = ref and ref["cpu_seconds_per_step"] / r["cpu_seconds_per_step"]
        memory = ref and r.get("train_peak_gb") and ref.get("train_peak_gb") and r["train_peak_gb"] / ref["train_peak_gb"]
        losses = " ".join(f"{v:.4f}" for v in r["losses"])
        return (f"{r['name']:16} {r['seconds_per_step']:11.2f} {r['cpu_seconds_per_step']:10.2f} "
                f"{r['peak_rss_gb']:8.2f} {fmt(r.get('train_peak_gb'), '8.2f'):>8} "
                f"{fmt(wall, '9.2f'):>9}× {fmt(cpu, '5.2f'):>5}× {fmt(memory, '11.2f'):>11}× "
                f"{fmt(r.get('first_step_seconds'), '10.0f'):>10}  {losses}")

    return "\n".join([rows_table(rows, head, 16, line), f"reference: {reference} (the example's best mode on this {speed.cpu_kind(speed.cpu_features())} CPU)"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="image side in pixels (default 512)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant, after one warm-up (default 3)")
    parser.add_argument("--only", action="append", default=[],
                        help="run the variants whose name contains this (repeatable): " + ", ".join([*EXAMPLE_MODES, *OURS]))
    parser.add_argument("--both-modes", action="store_true", help="run the example in fp32 and bf16, not only its best mode here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure_example(json.loads(args.child))), flush=True)
        return 0
    reference = best_example_mode()
    modes = list(EXAMPLE_MODES) if args.both_modes else [reference]
    names = [n for n in (*modes, *OURS) if not args.only or any(o in n for o in args.only)]
    rows = []
    for name in names:
        print(f"running {name} at {args.size}² ...", flush=True)
        runner = run_example if name in EXAMPLE_MODES else run_ours
        rows.append({"name": name, **runner(name, args.size, args.steps)})
    print(table(rows, reference))
    path = save("diffusers-baseline", {"machine": machine(),
                                       "size": args.size, "steps": args.steps, "images": IMAGES,
                                       "reference": reference, "results": rows})
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
