"""What the machine is and how busy the rest of it was while something was measured.

Speed figures from a shared machine can only be judged next to the CPU that other processes
used meanwhile; the benchmarks and the ablation runner record it with `OtherProcessesCpu`.
"""

from __future__ import annotations

import math
import os
import platform
import time
from pathlib import Path

CPU_FEATURES = ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def _cpuinfo() -> dict[str, str] | None:
    """The first CPU's /proc/cpuinfo fields (None where there is no /proc/cpuinfo)."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        return None
    return fields


def cpu_flags() -> set[str]:
    """The CPU's feature flags (empty where they cannot be read)."""
    fields = _cpuinfo()
    return set(fields.get("flags", "").split()) if fields else set()


def cpu_model() -> str:
    """The CPU's name (family/model numbers where the name is generic) and its bf16/AMX flags."""
    fields = _cpuinfo()
    if fields is None:
        return platform.processor() or platform.machine()
    name = fields.get("model name", platform.machine())
    family, model = fields.get("cpu family"), fields.get("model")
    flags = set(fields.get("flags", "").split())
    features = [feature for feature in CPU_FEATURES if feature in flags]
    return f"{name} (family {family} model {model}; {' '.join(features) or 'no avx512'})"


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has been busy so far (NaN where /proc/stat is missing)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    except (OSError, ValueError, IndexError):
        return math.nan
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class OtherProcessesCpu:
    """Context manager: other processes' CPU use over the block, in cores.

    After the block, `seconds` is its wall time and `cores` the CPU seconds the machine was busy
    minus this process's own, divided by `seconds` (at least 0; None when unknown).
    """

    def __enter__(self) -> OtherProcessesCpu:
        self.seconds = 0.0
        self.cores: float | None = None
        self._start = (busy_cpu_seconds(), time.process_time(), time.perf_counter())
        return self

    def __exit__(self, *exc_info) -> None:
        busy, own, started = self._start
        self.seconds = time.perf_counter() - started
        others = (busy_cpu_seconds() - busy) - (time.process_time() - own)
        if self.seconds > 0 and not math.isnan(others):
            self.cores = max(others / self.seconds, 0.0)
