"""What this machine's CPU does with onnxruntime's int8 kernels: the first thing to read when a result
differs from one machine to another. `python -m lstmserve.machine` prints it (.ci/run does, first).

onnxruntime (MLAS) multiplies uint8 activations by int8 weights with the widest instructions the CPU
has. With VNNI (vpdpbusd), AMX or ARM's dot-product instructions the products add straight into
int32, exactly. Without them (AVX2, AVX-512BW) vpmaddubsw first adds each pair of products into a
saturating int16: two products of 255 x 127 overflow it. export/quantize.py keeps weights within
+-64, so no pair can (2 x 255 x 64 = 32640 <= 32767) and every path adds the same integers.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

# (cpuinfo flag, what the int8 kernels do there), the first present wins: MLAS's own preference.
_X86_INT8_PATHS = (
    ("amx_int8", "AMX (int32 sums, exact)"),
    ("avx512_vnni", "AVX-512 VNNI (int32 sums, exact)"),
    ("avx_vnni", "AVX-VNNI (int32 sums, exact)"),
    ("avx512bw", "AVX-512BW (int16 pair sums, saturating)"),
    ("avx2", "AVX2 (int16 pair sums, saturating)"),
)
_ARM_INT8_PATHS = (
    ("i8mm", "ARM I8MM (int32 sums, exact)"),
    ("asimddp", "ARM dot product (int32 sums, exact)"),
)
# The flags worth printing: the instruction sets the kernels choose between.
_SIMD = (
    *("sse4_1", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8"),
    *("asimd", "asimddp", "i8mm", "sve"),
)


def cpu_model() -> str:
    for line in _cpuinfo().splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "cpu model"):
            return value.strip()
    return platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    for line in _cpuinfo().splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def int8_path(flags: set[str] | None = None) -> str:
    """Which int8 kernel onnxruntime takes on this CPU, and whether its sums can saturate."""
    flags = cpu_flags() if flags is None else flags
    for flag, path in _X86_INT8_PATHS + _ARM_INT8_PATHS:
        if flag in flags:
            return path
    return f"{platform.machine()} without VNNI or dot-product instructions"


def describe() -> str:
    """A few lines for the top of a CI log: the CPU, its SIMD flags, the int8 path, onnxruntime."""
    flags = cpu_flags()
    try:
        import onnxruntime

        runtime = f"onnxruntime {onnxruntime.__version__}"
    except ImportError:
        runtime = "onnxruntime not installed"
    return "\n".join(
        [
            f"CPU: {cpu_model()} ({platform.machine()}, {_cores()} cores)",
            f"SIMD: {' '.join(flag for flag in _SIMD if flag in flags) or 'none of ' + ' '.join(_SIMD)}",
            f"int8 kernels: {int8_path(flags)}",
            runtime,
        ]
    )


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:  # not Linux: platform's answers only
        return ""


if __name__ == "__main__":
    print(describe())
