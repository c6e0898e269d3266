"""bench/gpu.sh, the prepared GPU check: it parses, lists the suite's GPU cases without running
them, and (slow tier) runs the same cases end to end on the tiny models on a CPU. Nothing here needs
a GPU."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e  # the process itself is what is tested

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "gpu.sh"


def gpu_sh(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, env=env)


def test_the_script_parses_and_dry_runs_the_gpu_cases():
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0
    out = gpu_sh("--dry-run")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    cases = [json.loads(line) for line in lines[:-1]]
    assert [(c["model"], c["size"], c["method"], c["batch"]) for c in cases] == [
        ("sd1", 512, "ti", 1), ("sd1", 512, "ti", 8), ("sd1", 512, "dreamartist", 1),
        ("sd1", 512, "dreamartist", 8), ("sdxl", 1024, "ti", 1)]
    assert all(c["options"]["device"] == "cuda" for c in cases)
    assert cases[-1]["options"]["profile"] == "low-memory"
    assert all(c["images"] >= c["batch"] for c in cases)
    assert lines[-1] == "5 cases, budget 480 s"


@pytest.mark.slow
def test_a_tiny_smoke_run_on_the_cpu_prints_a_table_and_writes_json():
    out = gpu_sh("--device", "cpu", "--tiny", "--only", "sd1-512 ti b1", "--only", "low-memory", timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "sd1-512 ti b1 (tiny)" in out.stdout and "sdxl-1024 ti low-memory b1 (tiny)" in out.stdout
    saved = Path(out.stdout.strip().splitlines()[-1].split()[1])
    payload = json.loads(saved.read_text())
    saved.unlink()
    assert [r["name"] for r in payload["results"]] == ["sd1-512 ti b1 (tiny)", "sdxl-1024 ti low-memory b1 (tiny)"]
    assert all(r["seconds_per_step"] > 0 and r["settings"]["cpu"] for r in payload["results"])
