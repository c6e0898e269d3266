"""First benchmark: seconds per step and peak memory of one training step for the
tiny model and the full SD1.5 architecture (random weights) at 256², with the recommended settings
and plain fp32. Table on screen, JSON in bench/results/. The full suite is bench/run.py.

    .venv/bin/python bench/train_step.py [--steps 3]"""
from __future__ import annotations

import argparse
import sys

from harness import run_case
from report import machine, save, table
from run import PLAIN


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="timed steps per case (after one warm-up)")
    args = parser.parse_args()
    rows = []
    for name, model, size, steps in (("tiny 64²", "tiny-sd1", 64, 10), ("sd1.5 arch 256²", "sd1", 256, args.steps)):
        for variant, options in (("recommended", {}), ("fp32", PLAIN)):
            case = {"model": model, "size": size, "steps": steps, "options": options, "flops": False}
            print(f"running {name} {variant} ...", flush=True)
            rows.append({"name": f"{name} {variant}", "case": case, **run_case(case)})
    print(table(rows))
    print(f"saved {save('train_step', {'machine': machine(), 'results': rows})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
