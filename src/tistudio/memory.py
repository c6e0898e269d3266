"""This process's resident memory and the bytes modules hold, for benchmarks and memory tests
(resident memory from Linux /proc; 0 elsewhere), the one reader of /proc/self/status, and glibc's
heap controls (the C library when it is glibc; train/speed.py's heap reuse, trim_heap).

The peak is the kernel's VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss across fork and
exec, so a child started by a process holding 14 GB reports at least 14 GB whatever it does itself,
while VmHWM belongs to the child's own address space."""
from __future__ import annotations

import ctypes
import ctypes.util
import functools


def status_field(field: str) -> str | None:
    """The first word of `field`'s value in /proc/self/status ("VmRSS", "Umask"); None where Linux's
    /proc is missing or has no such field."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return line.split()[1]
    except (OSError, IndexError):
        pass
    return None


def _status_kib(field: str) -> int:
    value = status_field(field)
    return int(value) if value is not None else 0


def peak_rss_gib() -> float:
    """Highest resident memory of this process so far, in GiB."""
    return _status_kib("VmHWM") / 2**20


def rss_gib() -> float:
    """Resident memory of this process now, in GiB."""
    return _status_kib("VmRSS") / 2**20


def available_bytes(device) -> int | None:
    """Memory a new allocation can use now: the GPU's free memory for a CUDA device, else the host's
    MemAvailable (Linux); None where neither can be read."""
    if getattr(device, "type", str(device)).startswith("cuda"):
        import torch  # only asked about a CUDA device, where torch is loaded already

        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def module_bytes(*modules, buffers: bool = True) -> int:
    """Bytes held by the modules' parameters (and buffers)."""
    return sum(t.numel() * t.element_size() for m in modules
               for t in (*m.parameters(), *(m.buffers() if buffers else ())))


@functools.cache
def glibc():
    """The C library when it is glibc (mallopt and malloc_trim exist), else None."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def trim_heap() -> None:
    """Hand the heap's free pages back to the system now (malloc_trim; a no-op off glibc), also
    while training keeps freed memory for the next step (train/speed.py reuse_freed_memory)."""
    libc = glibc()
    if libc is not None:
        libc.malloc_trim(0)
