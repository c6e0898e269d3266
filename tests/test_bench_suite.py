"""The benchmark suite's measuring child (bench/harness.py) on the tiny model: the figures it reports
are there and consistent, and the op profile's grouping names the kinds that matter."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from harness import run_case  # noqa: E402
from op_profile import kind_of  # noqa: E402


def test_a_case_reports_time_memory_flops_and_a_gpu_estimate():
    r = run_case({"model": "tiny-sd1", "size": 32, "steps": 2, "method": "ti", "options": {}}, timeout=300)
    assert "error" not in r, r
    assert len(r["step_times"]) == 3 and len(r["losses"]) == 3  # one warm-up + two timed
    assert r["seconds_per_step"] > 0 and r["samples_per_second"] == pytest.approx(1 / r["seconds_per_step"])
    assert r["flops_per_step"] > 0
    assert 0.1 < r["peak_rss_gb"] < 2 and r["train_peak_gb"] <= r["peak_rss_gb"] + 0.01
    # Predicted GPU allocation = weights on the device + the step's tensor peak.
    assert r["tensor_peak_gb"] > 0
    assert r["gpu_estimate_gb"] == pytest.approx(r["weights_gb"] + r["tensor_peak_gb"])
    assert r["gpu_allocated_gb"] is None  # measured only on a GPU
    assert r["settings"]["profile"] == "balanced" and r["settings"]["heap_reuse"]


def test_op_kinds():
    assert kind_of("aten::_scaled_dot_product_flash_attention_for_cpu_backward") == "attention backward"
    assert kind_of("aten::_scaled_dot_product_flash_attention_for_cpu") == "attention forward"
    assert kind_of("aten::convolution_backward") == "convolution backward"
    assert kind_of("aten::mkldnn_convolution") == "convolution forward"
    assert kind_of("aten::addmm") == "matrix products"
    assert kind_of("aten::native_group_norm_backward") == "norms"
    assert kind_of("aten::silu") == "element-wise and other"
