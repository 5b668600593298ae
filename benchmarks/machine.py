"""The machine a benchmark ran on, printed with every table: a speed figure without it means little.

The CPU model, its core count, the vector and matrix extensions XLA:CPU and PyTorch pick kernels by
(AVX2, AVX-512, AMX), the threads used, the framework versions and the load average.
"""

from __future__ import annotations

import os
import platform
import sys

# cpuinfo flags that change which kernels the frameworks run
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")


def cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            first = f.read().split("\n\n")[0]
    except OSError:
        return {}
    return {key.strip(): value.strip() for key, _, value in (line.partition(":") for line in first.splitlines())}


def isa(flags: str) -> str:
    """``avx2 fma, no avx512f ...``: which of ``ISA_FLAGS`` the CPU has and which it lacks."""
    present = set(flags.split())
    has = [f for f in ISA_FLAGS if f in present]
    lacks = [f for f in ISA_FLAGS if f not in present]
    return " ".join(has) + (f"; no {' '.join(lacks)}" if lacks else "")


def describe(threads: int) -> str:
    """One line naming the machine: CPU, ISA, threads, versions, load average."""
    import jax
    import jaxlib

    info = cpuinfo()
    cpu = info.get("model name") or platform.processor() or platform.machine()
    line = (f"machine: {cpu}, {os.cpu_count()} CPU(s), {threads} thread(s) used; ISA {isa(info.get('flags', ''))}; "
            f"jax {jax.__version__}, jaxlib {jaxlib.__version__} on {jax.default_backend()} "
            f"({jax.devices()[0].device_kind})")
    if "torch" in sys.modules:
        line += f", torch {sys.modules['torch'].__version__}"
    return line + f"; python {platform.python_version()}; load average {os.getloadavg()[0]:.1f}"
