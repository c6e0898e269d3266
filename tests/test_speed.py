"""Speed/memory settings: profile resolution per device and model size, and that every speed option
leaves the gradient reaching the vectors unchanged (checkpointing, channels_last, attention kind)."""
import copy

import pytest
import torch

from tistudio.config import TrainConfig
from tistudio.errors import TIStudioError
from tistudio.memory import glibc
from tistudio.models.conditioning import PromptEncoder
from tistudio.models.denoiser import noisy_and_target, per_sample_mse, predict
from tistudio.train import speed

CPU = torch.device("cpu")


AVX2 = frozenset("fpu sse sse2 avx fma f16c avx2".split())
AVX512 = AVX2 | {"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni"}
AVX512_BF16 = AVX512 | {"avx512_bf16"}
AMX = AVX512_BF16 | {"amx_tile", "amx_bf16", "amx_int8"}


@pytest.fixture
def amx(monkeypatch):
    monkeypatch.setattr(speed, "cpu_features", lambda cpuinfo=None: AMX)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(speed, "physical_cores", lambda: 4)


def test_balanced_profile_on_cpu_depends_on_model_size(amx):
    small = speed.resolve(TrainConfig(), CPU, 2_000_000)
    assert (small.precision, small.threads, small.checkpointing, small.channels_last, small.compile) == \
        ("fp32", 1, False, False, False)  # a small model's step gains nothing from more threads
    large = speed.resolve(TrainConfig(), CPU, 860_000_000)
    assert (large.precision, large.threads, large.checkpointing, large.channels_last, large.compile) == \
        ("bf16", 4, False, True, False)
    assert speed.resolve(TrainConfig(), CPU, 860_000_000, processes=2).threads == 2


def test_profiles_and_explicit_options(amx):
    low = speed.resolve(TrainConfig(profile="low-memory"), CPU, 860_000_000)
    assert low.checkpointing and low.precision == "bf16" and not low.channels_last
    assert speed.resolve(TrainConfig(profile="low-memory"), CPU, 1000).precision == "bf16"
    assert not speed.resolve(TrainConfig(profile="fast"), CPU, 860_000_000).compile  # did not pay here
    gpu = speed.resolve(TrainConfig(profile="fast"), torch.device("cuda"), 860_000_000)
    assert gpu.compile and gpu.precision == "bf16" and gpu.threads == 0
    mine = speed.resolve(TrainConfig(profile="fast", precision="fp32", compile=False, threads=3,
                                     gradient_checkpointing=True), CPU, 860_000_000)
    assert (mine.precision, mine.compile, mine.threads, mine.checkpointing) == ("fp32", False, 3, True)
    assert not mine.channels_last  # follows the precision actually used


def test_heap_reuse_is_on_for_cpu_runs_only(amx):
    assert speed.resolve(TrainConfig(), CPU, 2_000_000).heap_reuse
    assert speed.resolve(TrainConfig(profile="low-memory"), CPU, 860_000_000).heap_reuse
    assert not speed.resolve(TrainConfig(), torch.device("cuda"), 860_000_000).heap_reuse
    assert not speed.resolve(TrainConfig(heap_reuse=False), CPU, 860_000_000).heap_reuse


_HEAP_PROBE = """
import json, torch
from tistudio.memory import rss_gib
from tistudio.train import speed

def rss():
    return rss_gib() * 1024

def touch_and_free():
    block = torch.ones(96 * 2**20, dtype=torch.uint8)  # above glibc's 32 MB mmap ceiling
    held = rss()
    del block
    return held - rss()

out = {"default": touch_and_free()}
with speed.reuse_freed_memory(True):
    out["training"] = touch_and_free()
    before = rss()
out["returned"] = before - rss()
out["after"] = touch_and_free()
print(json.dumps(out))
"""


@pytest.mark.e2e
@pytest.mark.skipif(glibc() is None, reason="glibc's mallopt is needed")
def test_freed_memory_is_kept_during_training_and_returned_after():
    # A fresh process: a long-lived one's heap layout (the test runner's) decides what can be trimmed.
    import json
    import subprocess
    import sys

    out = json.loads(subprocess.run([sys.executable, "-c", _HEAP_PROBE], capture_output=True, text=True,
                                    check=True).stdout)
    assert out["default"] > 80  # glibc's default: a large block is unmapped as soon as it is freed
    assert out["training"] < 16  # kept for the next step
    assert out["returned"] > 80  # handed back when training ends
    assert out["after"] > 80  # and the defaults are back


def test_cpu_without_native_half_keeps_fp32(monkeypatch):
    monkeypatch.setattr(speed, "cpu_features", lambda cpuinfo=None: AVX2)
    assert speed.resolve(TrainConfig(), CPU, 860_000_000).precision == "fp32"


@pytest.mark.parametrize("features, kind, precision, vae", [
    (AVX2, "avx2", "fp32", "fp32"),
    (AVX512, "avx512", "fp32", "fp32"),          # oneDNN would take bf16 here, but emulates it
    (AVX512_BF16, "avx512-bf16", "bf16", "bf16"),
    (AMX, "amx", "bf16", "bf16"),
    (frozenset({"sse2"}), "other", "fp32", "fp32"),
])
def test_balanced_chooses_from_the_detected_cpu_features(features, kind, precision, vae):
    s = speed.resolve(TrainConfig(), CPU, 860_000_000, features=features)
    assert (s.cpu, s.precision, s.vae_precision, s.encode_batch) == (kind, precision, vae, 1)
    assert s.summary().startswith(f"--profile balanced on a CPU with {kind}: {precision} frozen weights, "
                                  f"latents encoded in {vae}")
    # An explicit --precision fp32 also keeps the latents exact.
    assert speed.resolve(TrainConfig(precision="fp32"), CPU, 860_000_000, features=features).vae_precision == "fp32"
    # low-memory halves the weights only where bf16 is native: emulated, it is ~100x slower.
    low = speed.resolve(TrainConfig(profile="low-memory"), CPU, 860_000_000, features=features)
    assert (low.precision, low.vae_precision, low.checkpointing) == (precision, vae, True)
    forced = speed.resolve(TrainConfig(profile="low-memory", precision="bf16"), CPU, 860_000_000, features=features)
    assert forced.precision == "bf16"


def test_cpu_features_come_from_proc_cpuinfo_flags():
    text = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu avx2 avx512f avx512_bf16\nbogomips\t: 1\n"
    assert speed.cpu_features(text) == {"fpu", "avx2", "avx512f", "avx512_bf16"}
    assert speed.cpu_kind(speed.cpu_features(text)) == "avx512-bf16"
    assert speed.cpu_kind(speed.cpu_features()) in speed.CPU_KINDS  # this machine, whatever it is


@pytest.mark.parametrize("aten, env, kind, note", [
    ("AVX512", {}, "avx512-bf16", ""),
    # torch's element-wise kernels capped
    ("AVX2", {"ATEN_CPU_CAPABILITY": "avx2"}, "avx2", "avx512-bf16 capped by ATEN_CPU_CAPABILITY=avx2"),
    # oneDNN's convolutions and matmuls
    ("AVX512", {"ONEDNN_MAX_CPU_ISA": "AVX2"}, "avx2", "avx512-bf16 capped by ONEDNN_MAX_CPU_ISA=AVX2"),
    ("AVX512", {"ONEDNN_MAX_CPU_ISA": "avx512_core"}, "avx512", "avx512-bf16 capped by ONEDNN_MAX_CPU_ISA=avx512_core"),
    ("AVX512", {"DNNL_MAX_CPU_ISA": "AVX512_CORE_AMX"}, "avx512-bf16", ""),  # above the CPU: nothing lost
    ("AVX512", {"ONEDNN_MAX_CPU_ISA": "ALL"}, "avx512-bf16", ""),
    ("DEFAULT", {}, "other", "avx512-bf16 capped by torch's CPU capability DEFAULT"),
])
def test_isa_caps_lower_the_cpu_kind(monkeypatch, aten, env, kind, note):
    monkeypatch.setattr(speed, "_flags", lambda cpuinfo: AVX512_BF16)  # an AVX-512 BF16 CPU (Zen 5)
    assert speed.cpu_kind(speed.cpu_features(aten=aten, env=env)) == kind
    assert speed.cap_note(aten=aten, env=env) == note


def test_an_avx2_capped_process_trains_in_fp32_and_says_why(monkeypatch):
    monkeypatch.setattr(speed, "_flags", lambda cpuinfo: AVX512_BF16)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    assert speed.resolve(TrainConfig(), CPU, 860_000_000).precision == "bf16"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    s = speed.resolve(TrainConfig(), CPU, 860_000_000)
    assert (s.cpu, s.precision, s.vae_precision) == ("avx2", "fp32", "fp32")
    assert s.summary().startswith("--profile balanced on a CPU with avx2 (avx512-bf16 capped by "
                                  "ONEDNN_MAX_CPU_ISA=AVX2): fp32 frozen weights")
    assert speed.native_half(CPU) is None


def test_training_logs_what_the_profile_chose(tiny_models, dataset, tmp_path):
    from tistudio import api
    from tistudio.events import Message
    from tistudio.train.session import prepare

    emb = api.create_embedding(tiny_models["sd1"], "tok", "cat", 1, tmp_path / "emb")
    events = []
    prepare(TrainConfig(embedding=str(emb), data=str(dataset), steps=1, width=64, height=64,
                        log_dir=str(tmp_path / "runs"), output=str(tmp_path / "out.pt")),
            components=tiny_models["sd1"], callback=events.append, progress=False)
    kind = speed.cpu_kind(speed.cpu_features())
    assert any(isinstance(e, Message) and e.text.startswith(f"--profile balanced on a CPU with {kind}: fp32")
               for e in events)


@pytest.mark.parametrize("change, flag", [(dict(profile="turbo"), "--profile turbo"),
                                          (dict(attention="flash"), "--attention flash"),
                                          (dict(num_processes=0), "--num-processes 0")])
def test_bad_speed_options_name_the_flag(change, flag):
    with pytest.raises(TIStudioError, match=flag) as err:
        TrainConfig(**change)
    assert "\n" not in str(err.value)


def _vector_grad(c, settings=None):
    """Gradient of a fixed loss w.r.t. two injected vectors, after applying `settings`."""
    if settings is not None:
        speed.apply(c, settings)
    vec = torch.nn.Parameter(torch.randn(2, c.widths[0], generator=torch.Generator().manual_seed(3)) * 0.3)
    gen = torch.Generator().manual_seed(0)
    latents = torch.randn(2, 4, 8, 8, generator=gen)
    noise = torch.randn(latents.shape, generator=gen)
    t = torch.tensor([100, 700])
    noisy, target = noisy_and_target(c, latents, noise, t)
    cond = PromptEncoder(c).encode(["a photo of tok", "tok, painted"], {"tok": (vec,)})
    per_sample_mse(predict(c, noisy, t, cond, (64, 64)), target).sum().backward()
    return vec.grad


def _settings(**kw):
    base = dict(profile="balanced", precision="fp32", checkpointing=False, channels_last=False,
                compile=False, attention="sdpa", threads=0)
    return speed.SpeedSettings(**{**base, **kw})


def test_checkpointing_recomputes_unet_and_text_encoder_and_keeps_the_gradient(tiny_models):
    plain = _vector_grad(copy.deepcopy(tiny_models["sd1"]))
    c = copy.deepcopy(tiny_models["sd1"])
    calls = {"unet": 0, "text": 0}
    c.unet.down_blocks[0].attentions[0].transformer_blocks[0].register_forward_pre_hook(lambda *a: calls.__setitem__("unet", calls["unet"] + 1))
    c.text_encoders[0].encoder.layers[0].self_attn.register_forward_pre_hook(
        lambda *a: calls.__setitem__("text", calls["text"] + 1))
    grad = _vector_grad(c, _settings(checkpointing=True))
    # Each checkpointed segment starts twice: forward, then again in the backward pass (pre-hooks:
    # the recompute stops as soon as it has the tensors it needs, before forward hooks would run).
    assert calls == {"unet": 2, "text": 2}
    assert plain.abs().sum() > 0
    torch.testing.assert_close(grad, plain, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("kw", [dict(channels_last=True), dict(attention="classic")])
def test_layout_and_attention_kind_keep_the_gradient(tiny_models, kw):
    plain = _vector_grad(copy.deepcopy(tiny_models["sd1"]))
    torch.testing.assert_close(_vector_grad(copy.deepcopy(tiny_models["sd1"]), _settings(**kw)), plain,
                               rtol=1e-4, atol=1e-7)


def test_xformers_missing_is_a_one_line_error(tiny_models, monkeypatch):
    monkeypatch.setattr(speed, "_has_xformers", lambda: False)
    with pytest.raises(TIStudioError, match="xformers is not installed"):
        speed.apply(copy.deepcopy(tiny_models["sd1"]), _settings(attention="xformers"))
