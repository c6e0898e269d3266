"""Shared by the benchmark scripts: the machine's measured matrix-multiply peak, the results table,
and the JSON file under bench/results/ (git-ignored)."""
from __future__ import annotations

import itertools
import json
import os
import platform
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def gemm_peak(dtype_name: str, n: int = 2048, seconds: float = 3.0, device: str = "cpu") -> float:
    """Best FLOP/s of an n×n×n matmul over a few seconds (the ceiling any training step can reach),
    timed in CPU seconds per thread so that other jobs on a shared machine do not lower it; on a
    GPU, in wall seconds of a synchronised batch of products."""
    import torch

    dtype = getattr(torch, dtype_name)
    if device != "cpu":
        a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
        best, end = 0.0, time.perf_counter() + seconds
        while time.perf_counter() < end:
            torch.cuda.synchronize()
            t = time.perf_counter()
            for _ in range(20):
                torch.mm(a, b)
            torch.cuda.synchronize()
            best = max(best, 20 * 2 * n**3 / (time.perf_counter() - t))
        return best
    threads = torch.get_num_threads()
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    torch.mm(a, b)  # warm-up: kernel selection, page faults
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.process_time()
        torch.mm(a, b)
        best = max(best, 2 * n**3 * threads / max(time.process_time() - t, 1e-9))
    return best


def machine() -> dict:
    import os

    import torch

    from tistudio.train.speed import cap_note, cpu_features, cpu_kind

    return {"cpu": platform.processor() or platform.machine(), "cpu_kind": cpu_kind(cpu_features()),
            "cpu_cap": cap_note(),
            "cores": os.cpu_count(),
            "torch": torch.__version__, "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None}


def fmt(v, spec: str, none: str = "-") -> str:
    return none if v is None else format(v, spec)


def gpu_gb(r: dict) -> str:
    """Measured GPU allocation on a GPU; elsewhere the prediction from the step's tensor bytes (~)."""
    if r.get("gpu_allocated_gb") is not None:
        return f"{r['gpu_allocated_gb']:.2f}"
    estimate = r.get("gpu_estimate_gb")
    return "-" if estimate is None else f"~{estimate:.2f}"


def rows_table(rows: list[dict], head: str, width: int, line) -> str:
    """A results table: `head`, a rule, then per row `line(row)`, or the row's name (padded to
    `width`) and its error or reason for being skipped."""
    lines = [head, "-" * len(head)]
    for r in rows:
        if "error" in r or "skipped" in r:
            lines.append(f"{r['name']:{width}} {r.get('error') or r.get('skipped')}")
        else:
            lines.append(line(r))
    return "\n".join(lines)


def table(rows: list[dict], peaks: dict | None = None) -> str:
    head = f"{'case':44} {'s/step':>8} {'cpu s':>7} {'samples/s':>9} {'peak GB':>8} {'step GB':>8} {'GFLOP/step':>10} " \
           f"{'GFLOP/s':>8} {'of peak':>7} {'GPU GB':>7} {'1st step s':>10}"

    def line(r: dict) -> str:
        achieved = r.get("achieved_flops")
        peak = (peaks or {}).get(r.get("settings", {}).get("precision", "fp32"))
        # Share of peak per CPU second of each thread, like the peak itself: robust to other jobs.
        cpu = r.get("cpu_seconds_per_step")
        share = r["flops_per_step"] * r["threads"] / cpu / peak if achieved and peak and cpu else None
        return (f"{r['name']:44} {r['seconds_per_step']:8.3f} {fmt(r.get('cpu_seconds_per_step'), '7.2f'):>7} "
                f"{r['samples_per_second']:9.3f} "
                f"{r['peak_rss_gb']:8.2f} {fmt(r.get('train_peak_gb'), '8.2f'):>8} "
                f"{fmt(r['flops_per_step'] and r['flops_per_step'] / 1e9, '10.1f'):>10} "
                f"{fmt(achieved and achieved / 1e9, '8.1f'):>8} {fmt(share, '7.0%'):>7} "
                f"{gpu_gb(r):>7} {fmt(r.get('first_step_seconds'), '10.0f'):>10}")

    return rows_table(rows, head, 44, line)


def save(kind: str, payload: dict, path: Path | None = None) -> Path:
    """`payload` as JSON in a new file under bench/results/, or over `path` (a run that saves as it goes)."""
    from tistudio.atomic import write_text

    if path is None:  # claimed with O_EXCL: two benches saving in the same second must not share a file
        RESULTS.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime('%Y%m%d-%H%M%S')
        for n in itertools.count():
            path = RESULTS / f"{kind}-{stamp}{f'-{n}' if n else ''}.json"
            try:
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                break
            except FileExistsError:
                continue
    return write_text(path, json.dumps(payload, indent=2))
