"""The settings every `tistudio` process has before the libraries load (cli/main.set_environment),
checked where they matter: in a fresh process, at the moment torch is imported."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

# Records GOMP_SPINCOUNT when torch is first imported, then runs the CLI as `tistudio train --help`
# does: building the parser loads torch (the runs command reads embedding formats).
PROBE = """
import builtins, os, sys
seen = []
real = builtins.__import__
def probe(name, *args, **kwargs):
    if name == "torch" and "torch" not in sys.modules and not seen:
        seen.append(os.environ.get("GOMP_SPINCOUNT"))
    return real(name, *args, **kwargs)
builtins.__import__ = probe
from tistudio.cli.main import main
try:
    main(["train", "--help"])
except SystemExit:
    pass
print("torch loaded with GOMP_SPINCOUNT", seen)
"""


@pytest.mark.e2e
def test_openmp_idle_threads_spin_briefly_from_before_torch_loads():
    """Set after torch loaded, libgomp ignores it and its idle threads spin 300,000 rounds: a toy
    step took 16x longer from the CLI on a loaded 2-core machine (docs/webui.md, train/speed.py)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[-1] == "torch loaded with GOMP_SPINCOUNT ['10000']"
