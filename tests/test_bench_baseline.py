"""bench/diffusers_baseline.py: the re-enacted diffusers example step trains only the new token's row
(after its restore), in both of the example's precision modes, on a tiny model."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))


@pytest.mark.parametrize("weight_dtype", [torch.float32, torch.bfloat16])
def test_example_step_changes_only_the_new_row(weight_dtype):
    from diffusers_baseline import ExampleStep
    from tiny_models import build_tiny

    c = build_tiny("sd1")  # its own copy: the step resizes the text encoder and casts the UNet
    step = ExampleStep(c, weight_dtype, size=32)
    before = step.embedding.detach().clone()
    loss = step.step()

    assert math.isfinite(loss)
    changed = (step.embedding.detach() != before).any(dim=1).nonzero().flatten().tolist()
    assert changed == [step.new_id] == [49408]
    # As in the example: the whole matrix is the optimizer's parameter, the text encoder stays fp32
    # and the frozen UNet and VAE take the weight dtype.
    assert step.optimizer.state[step.embedding]["exp_avg"].shape == (49409, 32)
    assert step.te.dtype == torch.float32
    assert c.unet.dtype == c.vae.dtype == weight_dtype


@pytest.mark.parametrize("flags, mode", [
    ({"avx2", "fma"}, "example fp32"),
    ({"avx2", "avx512f", "avx512bw", "avx512vl"}, "example fp32"),   # bf16 emulated there
    ({"avx2", "avx512f", "avx512_bf16"}, "example bf16"),
    ({"avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"}, "example bf16"),
])
def test_the_example_is_compared_in_its_best_mode_for_the_cpu_kind(flags, mode):
    from diffusers_baseline import best_example_mode

    assert best_example_mode(frozenset(flags)) == mode


@pytest.mark.parametrize("env, mode", [
    ({}, "example bf16"),
    ({"ONEDNN_MAX_CPU_ISA": "AVX2"}, "example fp32"),          # oneDNN capped: bf16 emulated
    ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}, "example fp32"),   # AVX-512 without its bf16 dot products
])
def test_the_best_mode_follows_the_isa_caps_of_this_process(monkeypatch, env, mode):
    """On this machine's flags (no argument) the mode comes from train/speed.py's cpu_features, the
    one owner of the caps: an AVX-512 BF16 CPU capped to AVX2 is compared as an AVX2 CPU."""
    from diffusers_baseline import best_example_mode
    from tistudio.train import speed

    monkeypatch.setattr(speed, "_flags", lambda cpuinfo: frozenset({"avx2", "avx512f", "avx512_bf16"}))
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert best_example_mode() == mode
