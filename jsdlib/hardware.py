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
