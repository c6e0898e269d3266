"""Measure one benchmark case through the real training path (session.prepare + loop.run_loop),
in a fresh child process per case so peak memory (VmHWM) belongs to that case alone.

    python bench/harness.py '{"model": "sd1", "size": 256, "steps": 3, "options": {"precision": "bf16"}}'

prints one JSON line: seconds per step (median after warm-up), samples/s, peak RSS, FLOPs per step
(torch's flop counter over one extra step) and the loss of every step."""
from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tistudio.memory import module_bytes, peak_rss_gib, rss_gib
from tistudio.train.speed import OPENMP_ENV

HERE = Path(__file__).resolve().parent
DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


class _PeakSampler:
    """Peak RSS during the timed steps only (the process peak also covers building and latent caching)."""

    def __init__(self, every: float = 0.01):
        import threading

        self.peak, self.every, self.done = 0.0, every, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.done.wait(self.every):
            self.peak = max(self.peak, rss_gib())

    def stop(self) -> float:
        self.done.set()
        self.thread.join()
        return self.peak


class _StepTimer:
    """A loop hook (train/setup.py Hook): wall time of every optimizer step and its loss."""

    def __init__(self):
        self.start()
        self.times, self.cpu_times, self.losses = [], [], []

    def start(self):
        self.last, self.last_cpu = time.perf_counter(), time.process_time()

    def after_step(self, step, loss, lr):
        # CPU seconds (all threads) barely change when other jobs share the machine; wall time does.
        now, cpu = time.perf_counter(), time.process_time()
        self.times.append(now - self.last)
        self.cpu_times.append(cpu - self.last_cpu)
        self.losses.append(loss)
        self.last, self.last_cpu = now, cpu

    def at_end(self, result):
        pass


def _register_cpu_sdpa_flops() -> None:
    """torch's flop counter knows the CUDA attention kernels but not the CPU flash kernel; count it
    with the same formulas so CPU and GPU figures are comparable."""
    import torch
    from torch.utils import flop_counter as fc

    aten = torch.ops.aten
    fwd = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    bwd = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)
    if fwd is None or fwd in fc.flop_registry:
        return

    @fc.register_flop_formula(fwd)
    def _fwd(q, k, v, *args, out_shape=None, **kwargs):
        return fc.sdpa_flop_count(q, k, v)

    @fc.register_flop_formula(bwd)
    def _bwd(grad_out, q, k, v, *args, out_shape=None, **kwargs):
        return fc.sdpa_backward_flop_count(grad_out, q, k, v)


def one_step(session) -> None:
    """Forward and backward of every micro-batch of step 0, without the optimizer step
    (`session`: the run's train.setup.Setup)."""
    from tistudio.data.batches import batch_at
    from tistudio.train.loop import _micro_batch

    cfg = session.cfg
    plan = batch_at(0, n_items=len(session.cache), batch_size=cfg.batch_size, grad_accum=cfg.grad_accum,
                    seed=cfg.seed, flip=cfg.flip)
    for m, (indices, flips) in enumerate(zip(plan.micro_batches, plan.flips)):
        mb = _micro_batch(session, indices, flips, m * cfg.batch_size)
        session.objective.loss(mb).sum().backward()
    for e in session.objective.embeddings:
        for p in e.params:
            p.grad = None


def _count_flops(session) -> int:
    """FLOPs of one optimizer step (forward + backward of every micro-batch), counted separately
    from the timed steps because the counter itself slows execution."""
    from torch.utils.flop_counter import FlopCounterMode

    _register_cpu_sdpa_flops()
    counter = FlopCounterMode(display=False)
    with counter:
        one_step(session)
    return int(counter.get_total_flops())


def _tensor_peak(session) -> int | None:
    """Peak bytes of the tensors one step allocates (activations kept for the backward, gradients,
    kernel workspaces), from the profiler's allocation events in time order. Tensor sizes do not
    depend on the device, so weights + this peak predicts what the step allocates on a GPU (torch's
    max_memory_allocated), where nothing can be measured here."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        one_step(session)
    results = getattr(prof.profiler, "kineto_results", None)
    if results is None:
        return None
    device = session.device.type.upper()  # DeviceType.CPU / DeviceType.CUDA
    current = peak = 0
    for event in results.events():
        if event.name() == "[memory]" and str(event.device_type()).endswith(device):
            current += event.nbytes()
            peak = max(peak, current)
    return peak


def _weight_bytes(c) -> int:
    """The frozen weights a GPU run keeps on the device: UNet and text encoders (the VAE is off the
    device with --vae-offload)."""
    return module_bytes(c.unet, *c.text_encoders)


@contextlib.contextmanager
def session_for(case: dict):
    """A prepared training run for `case` (model, a small dataset, an embedding) in a temporary
    folder, as prepare's (Setup, TrainState), and {"build_seconds", "prepare_seconds"}: building the model, then everything before the
    first step (latent caching included); None when the model is absent here."""
    import torch

    sys.path.insert(0, str(HERE))
    from arch import build

    from tistudio import api
    from tistudio.config import TrainConfig
    from tistudio.train import speed
    from tistudio.train.session import prepare

    options = dict(case.get("options", {}))
    size, steps, warmup = case["size"], case.get("steps", 3), case.get("warmup", 1)
    # Build full-size models directly in the precision the settings will pick on the run's device,
    # as a loader would.
    full_size = case["model"] in ("sd1", "sdxl")
    device = torch.device("cuda" if options.get("device") == "cuda" else "cpu")
    precision = speed.resolve(TrainConfig(**options), device, speed.LARGE_UNET if full_size else 0).precision
    built = time.perf_counter()
    c = build(case["model"], getattr(torch, DTYPES[precision]))
    if c is None:
        yield None, {}
        return
    built = time.perf_counter() - built
    rss_built = rss_gib()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = _dataset(tmp / "data", size, case.get("images", 2))
        emb = api.create_embedding(c, "benchtok", "painting", case.get("vectors", 4), tmp / "emb")
        if case.get("method") == "dreamartist":  # its negative, found beside the positive
            api.create_embedding(c, "benchtok-neg", "", case.get("vectors", 4), tmp / "emb")
        cfg = TrainConfig(embedding=str(emb), data=str(data), steps=steps + warmup, width=size, height=size,
                          save_every=0, preview_every=0, log_dir=str(tmp / "runs"), lr="0.005",
                          template="style", output=str(tmp / "out.pt"), batch_size=case.get("batch", 1),
                          method=case.get("method", "ti"), seed=0, **options)
        prepared = time.perf_counter()
        if case.get("owned"):  # the run owns the model, as a CLI run that loaded it would (its VAE encoder goes)
            from tistudio.train import session

            session.load_components = lambda *args: c
            prepared_run = prepare(cfg, progress=False)
        else:
            prepared_run = prepare(cfg, components=c, progress=False)
        if case.get("up_front"):  # every latent before the first step, as before data/latent_encode.LatentFill
            for part in prepared_run[0].cache.parts:
                part.fill.ensure_all()
        yield prepared_run, {"build_seconds": built, "prepare_seconds": time.perf_counter() - prepared,
                             "rss_built_gb": rss_built}


def measure(case: dict) -> dict:
    """Run in the child: build the model, a small dataset, an embedding; train `steps` steps."""
    import torch

    from tistudio.train.loop import run_loop

    warmup = case.get("warmup", 1)
    with session_for(case) as (prepared, timings):
        if prepared is None:
            return {"skipped": f"{case['model']} model not available here"}
        session, state = prepared
        cfg = session.cfg
        rss_ready = rss_gib()
        timer = _StepTimer()
        session.hooks.append(timer)
        timer.start()
        sampler = _PeakSampler()
        gpu = session.device.type == "cuda"
        if gpu:
            torch.cuda.reset_peak_memory_stats(session.device)
        run_loop(session, state, progress=False)
        train_peak = sampler.stop()
        gpu_allocated = torch.cuda.max_memory_allocated(session.device) / 2**30 if gpu else None
        flops = _count_flops(session) if case.get("flops", True) else None
        tensors = _tensor_peak(session) if case.get("tensor_peak", True) else None
        weights = _weight_bytes(session.c)
        vae = module_bytes(session.c.vae)
        speed = getattr(session, "speed", None)
    timed = timer.times[warmup:] or timer.times
    per_step = statistics.median(timed)
    return {
        "seconds_per_step": per_step,
        "samples_per_second": cfg.batch_size * cfg.grad_accum / per_step,
        "cpu_seconds_per_step": statistics.median(timer.cpu_times[warmup:] or timer.cpu_times),
        "step_times": timer.times,
        "losses": timer.losses,
        "peak_rss_gb": peak_rss_gib(),
        "rss_ready_gb": rss_ready,
        "train_peak_gb": train_peak,
        "flops_per_step": flops,
        "tensor_peak_gb": tensors / 2**30 if tensors is not None else None,
        "weights_gb": weights / 2**30,
        "vae_gb": vae / 2**30,
        "gpu_estimate_gb": (weights + tensors) / 2**30 if tensors is not None else None,
        "gpu_allocated_gb": gpu_allocated,  # measured, on a GPU only
        "achieved_flops": flops / per_step if flops else None,
        **timings,
        # Loading stands for building here (random weights); the first step includes its warm-up.
        "first_step_seconds": timings["build_seconds"] + timings["prepare_seconds"] + timer.times[0],
        "threads": torch.get_num_threads(),
        "settings": speed.describe() if hasattr(speed, "describe") else {},
    }


def _dataset(folder: Path, size: int, n: int) -> Path:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray((rng.random((size, size, 3)) * 255).astype(np.uint8)).save(folder / f"{i:02d}-a picture.png")
    return folder


def run_child(argv: list[str], omp_wait_policy: str | None = None, timeout: float = 3600) -> dict:
    """Run a measuring script in a fresh Python process (offline, as the CLI sets OpenMP up) and
    return the last JSON line it printed, or {"error": ...} with its last line of stderr."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONWARNINGS": "ignore",
           **({"OMP_WAIT_POLICY": omp_wait_policy} if omp_wait_policy else OPENMP_ENV)}
    try:
        proc = subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {proc.returncode}: {tail[:300]}"}
    return json.loads(lines[-1])


def run_case(case: dict, timeout: float = 3600) -> dict:
    """Measure `case` in a child process; the parent never imports the model. As the CLI does
    (train/speed.py quiet_openmp), idle OpenMP threads spin briefly; a case may set OMP_WAIT_POLICY."""
    return run_child([str(HERE / "harness.py"), json.dumps(case)], case.get("omp_wait_policy"),
                     timeout)


if __name__ == "__main__":
    print(json.dumps(measure(json.loads(sys.argv[1]))), flush=True)
