"""The benchmark suite: one command, a table on screen, JSON in bench/results/.

    .venv/bin/python bench/run.py              # everything (about 1.5 hours on a 2-core CPU)
    .venv/bin/python bench/run.py --only sd1-512 --steps 2

Each case trains through the real path (session.prepare + run_loop) in its own process and reports
seconds per step (median after warm-up: one step, two on full-size models, whose first steps run
slower while oneDNN builds its kernels and the heap grows; also CPU seconds of all threads, which other jobs on a
shared machine barely change), samples/s, peak memory (whole process, and during
the steps only), FLOPs per step (torch's flop counter) and achieved FLOP/s as a share of this
machine's measured matmul peak in the precision the frozen weights use, and GPU memory: measured
(torch's max_memory_allocated) on a GPU, elsewhere predicted as "~" weights on the device plus the
peak of the tensors one step allocates (the profiler's allocation events; sizes do not depend on the
device). "recommended" is what the
default --profile balanced picks; "fp32" is plain fp32 with no layout tricks, for reference."""
from __future__ import annotations

import argparse
import sys

from harness import run_case
from report import gemm_peak, machine, save, table

PLAIN = {"precision": "fp32", "channels_last": False, "compile": False, "gradient_checkpointing": False}
VARIANTS = [("recommended", {}), ("low-memory", {"profile": "low-memory"}), ("fp32", PLAIN)]
# (name, model, size, steps, variants); DreamArtist runs beside TI wherever TI runs. SDXL at 1024²
# is there for its GPU-memory figure (fp32 would not fit this machine's 23 GB).
MODELS = [("tiny", "tiny-sd1", 64, 8, VARIANTS), ("toy", "toy", 32, 8, VARIANTS),
          ("sd1-256", "sd1", 256, 3, VARIANTS), ("sd1-512", "sd1", 512, 4, VARIANTS),
          ("sdxl-512", "sdxl", 512, 2, VARIANTS), ("sdxl-1024", "sdxl", 1024, 1, VARIANTS[:2])]


def cases(steps: int | None) -> list[dict]:
    out = []
    for label, model, size, n, variants in MODELS:
        for method in ("ti", "dreamartist"):
            for variant, options in variants:
                if variant == "low-memory" and model.startswith(("tiny", "toy")):
                    continue  # nothing to save on a model that fits anywhere
                warmup = 2 if model in ("sd1", "sdxl") and size < 1024 else 1
                out.append({"name": f"{label} {method} {variant}", "model": model, "size": size,
                            "steps": steps or n, "warmup": warmup, "method": method, "options": options,
                            # A 1024² step takes minutes here; its FLOPs are 4x those at 512².
                            "flops": size < 1024})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", default=[], help="run cases whose name contains this (repeatable)")
    parser.add_argument("--steps", type=int, help="timed steps per case (default: per model)")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    args = parser.parse_args()
    selected = [c for c in cases(args.steps) if not args.only or any(o in c["name"] for o in args.only)]
    if args.list:
        print("\n".join(c["name"] for c in selected))
        return 0
    peaks = {"fp32": gemm_peak("float32"), "bf16": gemm_peak("bfloat16")}
    print(f"matmul peak: fp32 {peaks['fp32'] / 1e9:.0f} GFLOP/s, bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s", flush=True)
    rows = []
    for case in selected:
        print(f"running {case['name']} ...", flush=True)
        rows.append({"name": case["name"], "case": case, **run_case(case)})
    print(table(rows, peaks))
    path = save("suite", {"machine": machine(), "gemm_peak": peaks, "results": rows})
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
