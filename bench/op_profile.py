"""Where one training step's time goes: torch's profiler over one step of a benchmark case, the
operators grouped into kinds (attention forward/backward, convolutions, matrix products, norms,
element-wise), a table on screen and JSON in bench/results/.

    .venv/bin/python bench/op_profile.py                       # SD1.5 architecture, 512², TI, balanced
    .venv/bin/python bench/op_profile.py --model sd1 --size 256 --method dreamartist --profile low-memory

Profiled under the same settings as training (heap reuse, threads, layout), after two warm-up steps."""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict

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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="sd1", help="sd1 | sdxl | tiny-sd1 | toy (default sd1)")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--method", default="ti", help="ti | dreamartist")
    p.add_argument("--profile", default="balanced", help="low-memory | balanced | fast")
    p.add_argument("--top", type=int, default=15, help="operators listed (default 15)")
    args = p.parse_args()

    import torch
    from torch.profiler import ProfilerActivity, profile

    from tistudio.train.speed import reuse_freed_memory

    case = {"model": args.model, "size": args.size, "method": args.method, "steps": 1,
            "options": {"profile": args.profile}}
    with session_for(case) as (prepared, _):
        if prepared is None:
            print(f"{args.model}: model not available here")
            return 1
        session, _state = prepared
        with reuse_freed_memory(session.speed.heap_reuse):
            for _ in range(2):
                one_step(session)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                one_step(session)
    # Self time, so nested operators are not counted twice.
    ops = [(e.key, e.self_cpu_time_total / 1e6, e.count) for e in prof.key_averages()]
    total = sum(t for _, t, _ in ops)
    kinds = defaultdict(float)
    for name, t, _ in ops:
        kinds[kind_of(name)] += t
    # The profiler times each operator on the thread that calls it: seconds, not CPU seconds.
    print(f"{args.model} {args.size}² {args.method} {args.profile}: {total:.2f} s inside operators "
          f"({torch.get_num_threads()} threads)")
    print(f"{'kind':<34}{'s':>8}{'share':>8}")
    for kind, t in sorted(kinds.items(), key=lambda kv: -kv[1]):
        print(f"{kind:<34}{t:8.2f}{t / total:8.0%}")
    print(f"\n{'operator':<58}{'s':>8}{'calls':>7}")
    for name, t, count in sorted(ops, key=lambda o: -o[1])[:args.top]:
        print(f"{name[:57]:<58}{t:8.3f}{count:7d}")
    path = save("op-profile", {"machine": machine(), "case": case, "total_seconds": total,
                               "kinds": dict(kinds), "operators": [
                                   {"name": n, "seconds": t, "calls": c} for n, t, c in ops]})
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
