"""The suite's GPU cases in one short run: SD1.5 at 512² (TI and DreamArtist, batch 1 and 8) and SDXL
at 1024² with --profile low-memory, each through the real training path (bench/harness.py, one child
process per case), then a table and JSON in bench/results/. Meant for a lent GPU (bench/gpu.sh): the
whole run is budgeted to finish in 8 minutes on an H100/H200 (models with random weights are built in
the children, so nothing is downloaded).

    bench/gpu.sh                          # on the GPU machine
    bench/gpu.sh --dry-run                # the cases and their settings, nothing run
    bench/gpu.sh --device cpu --tiny      # the same cases on the tiny models on a CPU (a smoke test)

Per case: s/step (median after warm-up), samples/s, GPU memory (torch's max_memory_allocated),
peak RSS, FLOPs per step (torch's flop counter) and MFU: achieved FLOP/s over the GPU's measured
bf16 matmul peak (the tiny smoke run counts no FLOPs: it only proves the path works)."""
from __future__ import annotations

import argparse
import json
import sys
import time

from harness import run_case
from report import fmt, rows_table

BUDGET_SECONDS = 480
# (name, model, size, method, batch, options). Batch-8 cases train on 8 images.
CASES = [("sd1-512 ti b1", "sd1", 512, "ti", 1, {}),
         ("sd1-512 ti b8", "sd1", 512, "ti", 8, {}),
         ("sd1-512 dreamartist b1", "sd1", 512, "dreamartist", 1, {}),
         ("sd1-512 dreamartist b8", "sd1", 512, "dreamartist", 8, {}),
         ("sdxl-1024 ti low-memory b1", "sdxl", 1024, "ti", 1, {"profile": "low-memory"})]


def cases(device: str, tiny: bool, steps: int) -> list[dict]:
    out = []
    for name, model, size, method, batch, options in CASES:
        out.append({"name": f"{name} (tiny)" if tiny else name, "model": f"tiny-{model}" if tiny else model, "size": 64 if tiny else size,
                    "method": method, "batch": batch, "images": max(2, batch), "steps": 1 if tiny else steps,
                    # cuDNN picks its kernels over the first steps; the tiny smoke run needs none.
                    "warmup": 1 if tiny else 2, "options": {**options, "device": device},
                    "flops": not tiny, "tensor_peak": False})  # measured on a GPU, not predicted
    return out


def table(rows: list[dict], peak: float | None) -> str:
    head = f"{'case':30} {'s/step':>8} {'samples/s':>9} {'GPU GB':>7} {'peak RSS':>8} {'TFLOP/step':>10} {'MFU':>6}"

    def line(r: dict) -> str:
        flops = r.get("flops_per_step")
        mfu = flops / r["seconds_per_step"] / peak if flops and peak else None
        gpu = r.get("gpu_allocated_gb")
        return (f"{r['name']:30} {r['seconds_per_step']:8.3f} {r['samples_per_second']:9.2f} "
                f"{fmt(gpu, '.2f'):>7} {r['peak_rss_gb']:8.2f} "
                f"{'-' if not flops else f'{flops / 1e12:.2f}':>10} {fmt(mfu, '.0%'):>6}")

    return rows_table(rows, head, 30, line)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--tiny", action="store_true", help="the tiny models at 64², one step (a smoke run)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per case (default 5)")
    parser.add_argument("--only", action="append", default=[], help="cases whose name contains this (repeatable)")
    parser.add_argument("--dry-run", action="store_true", help="print the cases and exit")
    args = parser.parse_args()
    selected = [c for c in cases(args.device, args.tiny, args.steps)
                if not args.only or any(o in c["name"] for o in args.only)]
    if args.dry_run:
        for case in selected:
            print(json.dumps(case))
        print(f"{len(selected)} cases, budget {BUDGET_SECONDS} s")
        return 0
    from report import gemm_peak, machine, save  # imports torch: not needed for --dry-run

    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("bench/gpu.sh: no CUDA device here; use --device cpu --tiny for a smoke run", file=sys.stderr)
            return 2
    peak = gemm_peak("bfloat16", n=8192 if args.device == "cuda" else 1024, seconds=2.0, device=args.device)
    print(f"bf16 matmul peak: {peak / 1e12:.1f} TFLOP/s", flush=True)
    started, rows, path = time.perf_counter(), [], None
    for case in selected:
        left = BUDGET_SECONDS - (time.perf_counter() - started)
        if left < 30:
            rows.append({"name": case["name"], "skipped": f"over the {BUDGET_SECONDS} s budget"})
            continue
        print(f"running {case['name']} ...", flush=True)
        rows.append({"name": case["name"], "case": case, **run_case(case, timeout=left)})
        # Saved after every case, so a run cut short still leaves its figures.
        payload = {"machine": machine(), "bf16_matmul_peak": peak, "results": rows,
                   "seconds": time.perf_counter() - started}
        path = save("gpu", payload, path)
    print(table(rows, peak))
    print(f"saved {path} ({time.perf_counter() - started:.0f} s)")
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
