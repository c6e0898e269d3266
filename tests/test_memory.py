"""tistudio.memory: a child's peak memory is its own, not the parent's (why it reads VmHWM)."""
import subprocess
import sys

import pytest
import torch

from tistudio.memory import peak_rss_gib, rss_gib


@pytest.mark.e2e
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_child_peak_excludes_the_parent_and_follows_its_own_allocations():
    held = torch.ones(768 * 2**20, dtype=torch.uint8)  # the parent holds 0.75 GiB while the child runs
    assert rss_gib() >= 0.75 and peak_rss_gib() >= rss_gib()
    code = ("import torch; from tistudio.memory import peak_rss_gib; a = peak_rss_gib(); "
            "b = torch.ones(512 * 2**20, dtype=torch.uint8); print(a, peak_rss_gib())")
    before, after = map(float, subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                              check=True).stdout.split())
    del held
    assert before < 0.6  # torch imported, nothing of the parent's 0.75 GiB
    assert 0.45 < after - before < 0.6  # its own 0.5 GiB block
