"""How busy the rest of the machine was while something was measured (from /proc/stat).

Speed figures from a shared machine can only be judged next to the CPU that other processes
used meanwhile; the benchmarks and the ablation runner record it with `OtherProcessesCpu`.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path


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
