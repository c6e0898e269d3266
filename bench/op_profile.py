"""Where one training step's time goes: torch's profiler over one step of a benchmark case, the
operators grouped into kinds (attention forward/backward, convolutions, matrix products, norms,
element-wise), a table on screen and JSON in bench/results/.

    .venv/bin/python bench/op_profile.py                       # SD1.5 architecture, 512², TI, balanced
    .venv/bin/python bench/op_profile.py --model sd1 --size 256 --method dreamartist --profile low-memory
    .venv/bin/python bench/op_profile.py --example --threads 1  # the diffusers example's step, its best mode here

Profiled under the same settings as training (heap reuse, threads, layout), after two warm-up steps.
The profiler times operators by wall clock: on a machine other jobs share, `--threads 1` keeps each
operator's share proportional to its CPU time (with two threads a descheduled one stalls every
parallel region, which inflates the many short element-wise operators the most)."""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict

from diffusers_baseline import EXAMPLE_MODES, ExampleStep, best_example_mode
from harness import one_step, session_for
from report import machine, save

# First matching pattern wins; the names are aten operators as the profiler reports them.
KINDS = [
    ("attention backward", ("flash_attention_for_cpu_backward", "efficient_attention_backward",
                            "flash_attention_backward", "_softmax_backward")),
    ("attention forward", ("flash_attention", "efficient_attention", "_softmax")),
    ("convolution backward", ("convolution_backward", "conv2d_backward")),
    ("convolution forward", ("convolution", "conv2d")),
    ("matrix products", ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")),
    ("norms", ("group_norm", "layer_norm")),
    ("layout copies and concatenation", ("aten::copy_", "aten::cat", "aten::clone", "contiguous")),
]


def kind_of(name: str) -> str:
    for kind, patterns in KINDS:
        if any(p in name for p in patterns):
            return kind
    return "element-wise and other"


def _profile_ours(case: dict):
    from torch.profiler import ProfilerActivity, profile

    from tistudio.train.speed import reuse_freed_memory

    with session_for(case) as (prepared, _):
        if prepared is None:
            return None
        session, _state = prepared
        with reuse_freed_memory(session.speed.heap_reuse):
            for _ in range(2):
                one_step(session)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                one_step(session)
    return prof


def _profile_example(model: str, size: int, threads: int):
    """The example's whole step (VAE encode, text encoder, UNet, AdamW over the embedding matrix) on
    `model` (SD1.5 with random weights by default), in its best mode for this CPU kind."""
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    from arch import build

    if threads:
        torch.set_num_threads(threads)
    dtype = getattr(torch, EXAMPLE_MODES[best_example_mode()])
    step = ExampleStep(build(model, dtype), dtype, size)

    def labelled(label, fn):  # its parts' inclusive times (forward only: their backward is autograd's)
        def call(*args, **kwargs):
            with record_function(label):
                return fn(*args, **kwargs)
        return call
    step.c.vae.encode = labelled("part: VAE encode", step.c.vae.encode)
    step.te.forward = labelled("part: text encoder forward", step.te.forward)
    step.c.unet.forward = labelled("part: UNet forward", step.c.unet.forward)
    for _ in range(2):
        step.step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step.step()
    return prof


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="sd1", help="sd1 | sdxl | tiny-sd1 | toy (default sd1)")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--method", default="ti", help="ti | dreamartist")
    p.add_argument("--profile", default="balanced", help="low-memory | balanced | fast")
    p.add_argument("--top", type=int, default=15, help="operators listed (default 15)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: the profile's, all cores)")
    p.add_argument("--example", action="store_true",
                   help="profile the diffusers example's step (bench/diffusers_baseline.py, its best mode here) instead")
    args = p.parse_args()

    import torch

    case = {"model": args.model, "size": args.size, "method": args.method, "steps": 1,
            "options": {"profile": args.profile, **({"threads": args.threads} if args.threads else {})}}
    if args.example:
        case = {"example": best_example_mode(), "model": args.model, "size": args.size, "threads": args.threads or None}
        prof = _profile_example(args.model, args.size, args.threads)
    else:
        prof = _profile_ours(case)
        if prof is None:
            print(f"{args.model}: model not available here")
            return 1
    # Self time, so nested operators are not counted twice.
    ops = [(e.key, e.self_cpu_time_total / 1e6, e.count) for e in prof.key_averages()]
    total = sum(t for _, t, _ in ops)
    kinds = defaultdict(float)
    for name, t, _ in ops:
        kinds[kind_of(name)] += t
    # The profiler times each operator on the thread that calls it: seconds, not CPU seconds.
    what = case["example"] if args.example else f"{args.model} {args.size}² {args.method} {args.profile}"
    print(f"{what}: {total:.2f} s inside operators "
          f"({torch.get_num_threads()} threads)")
    print(f"{'kind':<34}{'s':>8}{'share':>8}")
    for kind, t in sorted(kinds.items(), key=lambda kv: -kv[1]):
        print(f"{kind:<34}{t:8.2f}{t / total:8.0%}")
    parts = {e.key: e.cpu_time_total / 1e6 for e in prof.key_averages()
             if e.key.startswith(("part: ", "Optimizer.step"))}
    for name, t in parts.items():
        print(f"{name:<34}{t:8.2f}{t / total:8.0%}  (inclusive)")
    print(f"\n{'operator':<58}{'s':>8}{'calls':>7}")
    for name, t, count in sorted(ops, key=lambda o: -o[1])[:args.top]:
        print(f"{name[:57]:<58}{t:8.3f}{count:7d}")
    path = save("op-profile", {"machine": machine(), "case": case, "total_seconds": total,
                               "kinds": dict(kinds), "parts": parts, "operators": [
                                   {"name": n, "seconds": t, "calls": c} for n, t, c in ops]})
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
