"""What this CPU can do fast: one place that decides whether bf16 autocast pays off.

bf16 autocast on a CPU is fast only where the hardware has native bf16 matmuls (AVX512-BF16 or AMX, used by
oneDNN). On most laptops (AVX2 only) PyTorch emulates bf16 and the "fast" path is 2-3x *slower* than fp32, so
every bf16 switch in jsdlib asks :func:`native_bf16` first and runs fp32 otherwise.

The answer also follows the kernel-selection variables PyTorch and oneDNN read: under
``ATEN_CPU_CAPABILITY=avx2`` (or ``default``) or ``ONEDNN_MAX_CPU_ISA=AVX2`` (or lower), bf16 counts as not
native, which is how CI's second notebook pass imitates a laptop on a machine that has AMX.
"""
from __future__ import annotations

import functools
import os
import platform
import time

import torch

# ONEDNN_MAX_CPU_ISA values below which oneDNN has no native bf16 instructions.
_ONEDNN_NO_BF16 = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"}


@functools.lru_cache(maxsize=None)
def native_bf16() -> bool:
    """True when bf16 autocast on this CPU runs on native bf16 instructions (AVX512-BF16 / AMX).

    ``$JSDLIB_CPU_BF16`` = ``1`` / ``0`` overrides the detection; unset or ``auto`` detects.
    """
    override = os.environ.get("JSDLIB_CPU_BF16", "auto").strip().lower()
    if override in ("1", "0"):
        return override == "1"
    if override != "auto":
        raise ValueError(f"JSDLIB_CPU_BF16={override!r}: use 1 (force bf16), 0 (force fp32) or auto")
    if torch.backends.cpu.get_cpu_capability() in ("DEFAULT", "AVX2"):
        return False
    if os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper() in _ONEDNN_NO_BF16:
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without oneDNN
        return False


def cpu_bf16(requested: bool) -> bool:
    """Whether a CPU run that asks for bf16 autocast (``requested``) gets it: only where it is native."""
    return bool(requested) and native_bf16()


def describe() -> str:
    """One line for logs and reports: the ATen kernel level and whether bf16 is native."""
    return (f"cpu capability {torch.backends.cpu.get_cpu_capability()}, "
            f"native bf16 {'yes' if native_bf16() else 'no'}")


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; ``platform.processor()`` elsewhere), for reports."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def matmul_tflops(dtype: torch.dtype = torch.float32, device="cpu", n: int = 1024, seconds: float = 1.0) -> float:
    """Measured throughput (TFLOP/s) of ``n x n @ n x n`` matmuls in ``dtype`` on ``device``: a short GEMM probe.

    One product costs ``2 n^3`` FLOPs; the probe repeats it for about ``seconds`` after one warm-up product and
    returns the best of several timed rounds (the machine's attainable GEMM rate, the roofline's ceiling for
    compute-bound work such as CMC's attention over thousands of candidates). Uses torch's current thread count.
    """
    dev = torch.device(device)
    gen = torch.Generator().manual_seed(0)                 # the caller's global RNG is not drawn from
    a = torch.randn(n, n, generator=gen).to(dev, dtype)
    b = torch.randn(n, n, generator=gen).to(dev, dtype)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    a @ b
    sync()
    t = time.perf_counter()
    a @ b
    sync()
    one = max(time.perf_counter() - t, 1e-6)
    reps = max(1, int(seconds / 5 / one))
    best = 0.0
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        sync()
        best = max(best, 2.0 * n ** 3 * reps / (time.perf_counter() - t))
    return best / 1e12


_MALLOC_DONE = []


def keep_freed_memory() -> bool:
    """Ask glibc's allocator to keep freed large blocks instead of handing them back to the kernel (once per process).

    A JSD step allocates a fresh 47 MB gradient for the vocabulary matrix ``E`` (30,522 x 384) and a 31 MB score
    block; above glibc's mmap threshold (at most 32 MB) each comes from a new ``mmap`` and is zero-filled page by page
    by the kernel, about a fifth of a step on a 2-core laptop. Raising the mmap and trim thresholds to 1 GiB lets
    those blocks be reused: the same arithmetic, the same numbers, ~13 % less time per JSD epoch measured here
    (docs/decisions.md, "make run within the hour"). The process keeps up to that much freed memory. Returns whether it
    applied (``False`` off glibc, e.g. macOS or Windows, or with ``JSDLIB_KEEP_FREED_MEMORY=0``; then nothing changes).
    """
    if _MALLOC_DONE:
        return _MALLOC_DONE[0]
    ok = False
    if platform.system() == "Linux" and os.environ.get("JSDLIB_KEEP_FREED_MEMORY", "1") != "0":
        try:
            import ctypes
            libc = ctypes.CDLL("libc.so.6")
            M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
            ok = all(libc.mallopt(k, v) == 1 for k, v in ((M_TRIM_THRESHOLD, 1 << 30), (M_MMAP_THRESHOLD, 1 << 30),
                                                         (M_TOP_PAD, 1 << 28)))
        except (OSError, AttributeError):
            ok = False
    _MALLOC_DONE.append(ok)
    return ok
