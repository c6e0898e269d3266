"""Time to the first step on the SD1.5 architecture (random weights): building the model, set-up,
latent caching and step 1, with every latent encoded before step 1 (as up to now) against encoded as
the steps first need them (data/latent_encode.LatentFill: step 1 waits for its own image only), the
latter also with a model the run owns (as a CLI run: the VAE encoder goes to the cache and then
away; the harness hands over the model it built). All in one run, one fresh process each, so the
figures share the machine's load.

    .venv/bin/python bench/first_step.py                 # 30 images at 512², ~10 minutes on 2 cores
    .venv/bin/python bench/first_step.py --images 8 --size 256
    .venv/bin/python bench/first_step.py --images 4 --steps 2 --only owns --profile low-memory

Also reported: peak RSS of the whole process and during the steps, and RSS after building the model
and after set-up (what holds memory before any step). JSON in bench/results/."""
from __future__ import annotations

import argparse
import sys

from harness import run_case
from report import machine, rows_table, save


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=30)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=1, help="steps after the first (its warm-up)")
    parser.add_argument("--profile", default="balanced", help="--profile of our runs (default balanced)")
    parser.add_argument("--only", action="append", default=[], help="rows whose name contains this (repeatable)")
    args = parser.parse_args()
    rows = []
    pairs = (("latents up front (before)", True, False), ("as the steps need them", False, False),
             ("as needed, run owns the model", False, True))
    for name, up_front, owned in [p for p in pairs if not args.only or any(o in p[0] for o in args.only)]:
        case = {"model": "sd1", "size": args.size, "steps": args.steps, "warmup": 1, "images": args.images,
                "vectors": 1, "flops": False, "tensor_peak": False, "up_front": up_front, "owned": owned,
                "options": {"profile": args.profile}}
        print(f"running {name} ...", flush=True)
        rows.append({"name": name, "case": case, **run_case(case)})
    head = f"{'case':30} {'build s':>7} {'set-up s':>8} {'step 1 s':>8} {'1st step s':>10} {'s/step':>6} " \
           f"{'cpu s':>6} {'RSS built':>9} {'RSS ready':>9} {'step GB':>7} {'peak GB':>7}"

    def line(r: dict) -> str:
        return (f"{r['name']:30} {r['build_seconds']:7.0f} {r['prepare_seconds']:8.0f} {r['step_times'][0]:8.0f} "
                f"{r['first_step_seconds']:10.0f} {r['seconds_per_step']:6.1f} {r['cpu_seconds_per_step']:6.1f} "
                f"{r['rss_built_gb']:9.2f} {r['rss_ready_gb']:9.2f} {r['train_peak_gb']:7.2f} {r['peak_rss_gb']:7.2f}")
    print(rows_table(rows, head, 30, line))
    print(f"saved {save('first-step', {'machine': machine(), 'images': args.images, 'size': args.size, 'profile': args.profile, 'results': rows})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
