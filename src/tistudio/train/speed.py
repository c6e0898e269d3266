"""Speed and memory settings of a training run: `--profile low-memory|balanced|fast` plus explicit
flags resolve, per device and model size, into one SpeedSettings that prepare() applies to the
frozen parts. Each default is the fastest setting measured correct here (docs/speed.md has the table).

Why the rules look the way they do (measured on 2-core Sapphire Rapids and Zen CPUs, docs/speed.md):
- The CPU's kind is read from its ISA flags (cpu_kind): bf16 is native with AMX (Sapphire Rapids and
  later) and with AVX-512 BF16 (Zen 4/5, Cooper Lake); elsewhere (AVX2, plain AVX-512) torch
  emulates it and it is slower than fp32, so `balanced` keeps fp32 there. ATEN_CPU_CAPABILITY and
  ONEDNN_MAX_CPU_ISA lower the kind as they lower what torch may use (isa_cap).
- bf16 frozen weights run on AMX: ~2x faster than fp32 on the SD1.5 UNet with the same loss to
  ~1e-3; on a tiny model (< 100 M UNet parameters) the casts cost more than they save.
- Latent caching (data/latent_encode.py) encodes in bf16 where bf16 is native and the frozen
  weights are bf16 (2.3x fewer CPU seconds than the plain fp32 loop on an AVX-512 BF16 Zen 5, with
  NHWC), else in fp32, in NHWC layout, one image per call on a CPU (two per call gained nothing).
- Threads: every physical core, divided between data-parallel processes, for a full-size model; one
  for a small one (< LARGE_UNET), whose step a second thread does not speed up.
- Gradient checkpointing saves activation memory at ~1.3x the compute: only `low-memory` turns it on.
- torch.compile did not pay on the CPU at 512²: only `fast` on a GPU compiles by default.
- Heap reuse (CPU): glibc serves every allocation above 32 MB with a fresh mmap and unmaps it on
  free, so each step re-faults (and the kernel zeroes) the same ~1 GB of activations; keeping freed
  memory in the heap made the SD1.5 512² step about 5% faster at the same peak.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import asdict, dataclass

from ..errors import TIStudioError
from ..memory import glibc

CPU_KINDS = ("amx", "avx512-bf16", "avx512", "avx2", "other")
NATIVE_BF16_CPUS = ("amx", "avx512-bf16")
LARGE_UNET = 100_000_000   # UNet parameters from which half precision and all threads pay on a CPU


# libgomp's idle threads spin 300,000 rounds before they sleep. On a busy machine those spins steal
# the cores the working thread needs; never spinning (OMP_WAIT_POLICY=PASSIVE) costs a wake-up per
# parallel region instead. 100 toy steps, 2 threads, AMD EPYC Zen 5: idle machine 1.7 s (libgomp's
# default) / 4.1 s (PASSIVE) / 1.6 s (10,000 rounds); two busy loops on the cores 21.8 / 4.8 / 4.4 s.
OPENMP_ENV = {"GOMP_SPINCOUNT": "10000"}


def quiet_openmp() -> None:
    """Idle OpenMP threads spin briefly, then sleep (OPENMP_ENV). Must run before torch is imported
    to take effect (libgomp reads it once, at load); a user's own OMP_WAIT_POLICY or GOMP_SPINCOUNT
    wins."""
    if "OMP_WAIT_POLICY" not in os.environ:
        for key, value in OPENMP_ENV.items():
            os.environ.setdefault(key, value)


@dataclass(frozen=True)
class SpeedSettings:
    profile: str
    precision: str          # dtype of the frozen weights; the vectors are always fp32
    checkpointing: bool     # recompute UNet and text-encoder activations in the backward pass
    channels_last: bool     # NHWC memory layout for the UNet's convolutions
    compile: bool           # torch.compile the UNet
    attention: str          # sdpa | xformers | classic (unfused, for comparison only)
    threads: int            # CPU threads (0 on GPU: left alone)
    heap_reuse: bool = False  # CPU: keep freed memory for the next step (see reuse_freed_memory)
    vae_precision: str = "fp32"  # dtype the VAE encodes the latent cache in
    vae_channels_last: bool = True  # NHWC layout for the VAE encoder while caching
    encode_batch: int = 1     # images per VAE call while caching latents
    cpu: str = ""             # cpu_kind() on a CPU, "" on a GPU
    cpu_cap: str = ""         # what lowered this CPU's kind (cap_note), "" when nothing did

    def describe(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        """One log line: what the profile chose and, on a CPU, for which kind of CPU."""
        cap = f" ({self.cpu_cap})" if self.cpu_cap else ""
        where = f"on a CPU with {self.cpu}{cap}" if self.cpu else "on the GPU"
        extras = [name for name, on in (("gradient checkpointing", self.checkpointing),
                                        ("channels-last", self.channels_last), ("torch.compile", self.compile)) if on]
        threads = f", {self.threads} threads" if self.threads else ""
        return (f"--profile {self.profile} {where}: {self.precision} frozen weights, latents encoded in "
                f"{self.vae_precision} ({self.encode_batch} per call){threads}"
                + "".join(f", {e}" for e in extras))


def cpu_features(cpuinfo: str | None = None, aten: str | None = None, env=None) -> frozenset[str]:
    """The CPU's ISA flags: the `flags` line of /proc/cpuinfo (or of `cpuinfo`, for tests), else,
    off Linux, what torch's own CPU checks report, spelled as Linux spells them. This machine's
    (no `cpuinfo`) are those this process may use: without the flags above the cap that
    ATEN_CPU_CAPABILITY or ONEDNN_MAX_CPU_ISA set (isa_cap; `aten`, `env`: injected for tests)."""
    return _capped(_flags(cpuinfo), isa_cap(aten, env)) if cpuinfo is None else _flags(cpuinfo)


def _flags(cpuinfo: str | None) -> frozenset[str]:
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
                cpuinfo = fh.read()
        except OSError:
            cpuinfo = ""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    import torch

    checks = {"avx2": "_is_avx2_supported", "avx512f": "_is_avx512_supported",
              "avx512_bf16": "_is_avx512_bf16_supported", "amx_tile": "_is_amx_tile_supported"}
    found = {flag for flag, name in checks.items() if getattr(torch.cpu, name, lambda: False)()}
    return frozenset(found | ({"amx_bf16"} if "amx_tile" in found else set()))


# ONEDNN_MAX_CPU_ISA's values (oneDNN's cpu_isa names) -> the best CPU kind they leave oneDNN, whose
# kernels run the convolutions and matmuls: bf16 is native from AVX512_CORE_BF16 on, AMX from *_AMX.
_ONEDNN_CAPS = {"sse41": "other", "avx": "other", "avx2": "avx2", "avx2_vnni": "avx2", "avx2_vnni_2": "avx2",
                "avx512_core": "avx512", "avx512_core_vnni": "avx512", "avx512_core_bf16": "avx512-bf16",
                "avx512_core_fp16": "avx512-bf16", "avx10_1_512": "avx512-bf16", "avx512_core_amx": "amx",
                "avx512_core_amx_fp16": "amx", "avx10_1_512_amx": "amx", "avx10_1_512_amx_fp16": "amx"}
# ATen's vector capability (ATEN_CPU_CAPABILITY, as torch.backends.cpu.get_cpu_capability reports it):
# AVX2 or DEFAULT keep every element-wise kernel below AVX-512; AVX512 caps nothing.
_ATEN_CAPS = {"avx2": "avx2", "default": "other"}


def isa_cap(aten: str | None = None, env=None) -> tuple[str, str] | None:
    """(the best CPU kind this process may use, the setting that says so), or None when nothing caps
    it: the lower of ONEDNN_MAX_CPU_ISA (or its old name DNNL_MAX_CPU_ISA) and ATen's capability
    (`aten`: default torch's, which honours ATEN_CPU_CAPABILITY). A cap above what the CPU has
    changes nothing (cpu_kind takes the lower)."""
    env = os.environ if env is None else env
    caps = []
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        value = env.get(name, "")
        if value.lower() in _ONEDNN_CAPS:
            caps.append((_ONEDNN_CAPS[value.lower()], f"{name}={value}"))
            break
    if aten is None:
        import torch

        aten = torch.backends.cpu.get_cpu_capability()
    if aten.lower() in _ATEN_CAPS:
        setting = f"ATEN_CPU_CAPABILITY={env['ATEN_CPU_CAPABILITY']}" if env.get("ATEN_CPU_CAPABILITY") \
            else f"torch's CPU capability {aten}"
        caps.append((_ATEN_CAPS[aten.lower()], setting))
    return max(caps, key=lambda cap: CPU_KINDS.index(cap[0]), default=None)


# The flags each kind lacks that the kinds above it add: what a cap to that kind takes away.
_ABOVE = {"amx": (), "avx512-bf16": ("amx",), "avx512": ("amx", "avx512_bf16"), "avx2": ("amx", "avx512"),
          "other": ("amx", "avx512", "avx2")}


def _capped(features: frozenset[str], cap: tuple[str, str] | None) -> frozenset[str]:
    if cap is None:
        return features
    return frozenset(f for f in features if not f.startswith(_ABOVE[cap[0]]))


def cap_note(aten: str | None = None, env=None) -> str:
    """What capped this machine's CPU kind, e.g. "avx512-bf16 capped by ONEDNN_MAX_CPU_ISA=AVX2",
    or "" when the cap (if any) takes nothing away."""
    cap = isa_cap(aten, env)
    flags = _flags(None)
    raw = cpu_kind(flags)
    if cap is None or cpu_kind(_capped(flags, cap)) == raw:
        return ""
    return f"{raw} capped by {cap[1]}"


def cpu_kind(features: frozenset[str]) -> str:
    """amx | avx512-bf16 | avx512 | avx2 | other: the best matrix unit these ISA flags offer."""
    if {"amx_tile", "amx_bf16"} <= features:
        return "amx"
    if "avx512f" in features:
        return "avx512-bf16" if "avx512_bf16" in features else "avx512"
    return "avx2" if "avx2" in features else "other"


def native_half(device, features: frozenset[str] | None = None) -> str | None:
    """The half type this device computes natively, or None (then half only saves memory). On a CPU
    from its ISA flags: oneDNN accepts bf16 on any AVX-512 CPU, but without AVX-512 BF16 or AMX it
    emulates it, slower than fp32."""
    import torch

    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu":
        kind = cpu_kind(cpu_features() if features is None else features)
        return "bf16" if kind in NATIVE_BF16_CPUS else None
    return None


def physical_cores() -> int:
    import psutil  # an accelerate dependency

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def resolve(cfg, device, unet_parameters: int, processes: int = 1,
            features: frozenset[str] | None = None) -> SpeedSettings:
    """The profile's choices for this device and model, with every explicitly set option on top.
    `processes` on this machine share its cores; `features`: the CPU's ISA flags (default: this
    machine's, cpu_features)."""
    profile = cfg.profile
    large = unet_parameters >= LARGE_UNET
    gpu = device.type == "cuda"
    cap = ""
    if not gpu and features is None:
        features, cap = cpu_features(), cap_note()
    half = native_half(device, features)
    # Half weights only where the half is native (a GPU's always is): on a CPU that emulates bf16
    # (AVX2, plain AVX-512) one SD1.5 convolution took 127x its fp32 time, so even low-memory keeps
    # fp32 there and saves by checkpointing alone (--precision bf16 still forces it).
    if gpu or large:
        precision = half or "fp32"
    else:
        precision = "bf16" if profile == "low-memory" and half else "fp32"
    precision = precision if cfg.precision is None else cfg.precision
    checkpointing = profile == "low-memory"
    # channels_last pays for oneDNN / cuDNN convolutions in half precision; in fp32 on a CPU it adds
    # layout conversions around every GroupNorm.
    channels_last = precision != "fp32" and profile != "low-memory" and (gpu or large)
    # Measured on the CPU: no gain at 512² (6.9 vs 6.3 CPU s/step) after a 6-minute compile, so only
    # `fast` on a GPU compiles by default; --compile still asks for it anywhere.
    compile_unet = profile == "fast" and gpu
    # A small model's step is mostly Python and tiny kernels: on the toy model 1,000 steps took the
    # same wall time on one thread as on two (20.5-23.1 s against 20.4-23.9 s, idle Zen 5) for 30%
    # less CPU, and a second thread only adds a barrier that any other process on the cores (a
    # browser watching the run) stalls.
    threads = 0 if gpu else max(1, physical_cores() // processes) if large else 1
    # The VAE encodes in half only where that half is native and bf16 (the SD VAEs overflow fp16),
    # and only when the run trains in it: --precision fp32 also gives fp32 latents.
    vae_precision = "bf16" if precision == "bf16" and half == "bf16" else "fp32"
    # Images per VAE call: a GPU is fed in batches (low-memory: one at a time); a CPU's cores are
    # already busy with one 512² image, and a second only adds memory (docs/speed.md).
    encode_batch = 1 if profile == "low-memory" or not gpu else 8
    # NHWC suits oneDNN's and cuDNN's convolutions: measured 1.2x (fp32) and 1.3x (bf16) fewer CPU
    # seconds per image on the SD1.5 VAE at 512², fp32 results equal to 2e-5 (bench/latent_cache.py).
    vae_channels_last = True
    pick = lambda given, default: default if given is None else given  # noqa: E731
    return SpeedSettings(
        profile=profile,
        precision=precision,
        checkpointing=pick(cfg.gradient_checkpointing, checkpointing),
        channels_last=pick(cfg.channels_last, channels_last),
        compile=pick(cfg.compile, compile_unet),
        attention=cfg.attention,  # SDPA picks flash / memory-efficient kernels itself
        threads=cfg.threads or threads,
        heap_reuse=pick(cfg.heap_reuse, not gpu),
        vae_precision=vae_precision,
        vae_channels_last=vae_channels_last,
        encode_batch=encode_batch,
        cpu="" if gpu else cpu_kind(features),
        cpu_cap=cap,
    )


# glibc's mallopt parameters (malloc.h) and their defaults.
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_DEFAULT_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX = 128 * 1024, 65536


@contextlib.contextmanager
def reuse_freed_memory(enabled: bool):
    """While training: serve large allocations from the heap and never give freed memory back, so
    each step reuses the pages the last one touched instead of mapping and zeroing them again. The
    peak is unchanged (the same tensors live at once); afterwards glibc's defaults come back and
    malloc_trim hands the pool back to the system (all of it in a fresh process; in a long-lived one,
    such as the web UI, what the heap's layout lets it release). A no-op off glibc."""
    libc = glibc() if enabled else None
    if libc is None:
        yield
        return
    libc.mallopt(_M_MMAP_MAX, 0)
    libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)  # an int: the largest threshold mallopt takes
    try:
        yield
    finally:
        libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
        libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
        libc.malloc_trim(0)


def _has_xformers() -> bool:
    import importlib.util

    return importlib.util.find_spec("xformers") is not None


def apply(c, s: SpeedSettings) -> None:
    """Put the frozen UNet and text encoders in the chosen layout and modes (after the dtype move)."""
    import torch

    if s.threads:
        torch.set_num_threads(s.threads)
    _attention(c.unet, s.attention)
    if s.checkpointing:
        c.unet.enable_gradient_checkpointing()
        for encoder in c.text_encoders:
            # transformers only checkpoints in train mode; CLIP has no dropout, so nothing else changes.
            encoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            encoder.train()
        # Non-reentrant checkpointing: a segment whose inputs need no grad (the UNet's noisy
        # latents) still passes gradients to the context it reads, so they reach the vectors.
        c.unet.train()
    if s.channels_last:
        c.unet.to(memory_format=torch.channels_last)
    if s.compile:
        c.unet.compile()


def _attention(unet, kind: str) -> None:
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    if kind == "xformers":
        if not _has_xformers():
            raise TIStudioError("--attention xformers: xformers is not installed; pip install xformers "
                                "or use --attention sdpa")
        unet.enable_xformers_memory_efficient_attention()
        return
    wanted = AttnProcessor2_0 if kind == "sdpa" else AttnProcessor
    if not all(isinstance(p, wanted) for p in unet.attn_processors.values()):
        unet.set_attn_processor(wanted())
