"""How many threads a model worker should give onnxruntime.

onnxruntime's own default is one thread per core of the host. In a container limited to
two CPUs on a 64-core node that is 64 threads fighting over two, and two model workers on
one laptop each take every core and slow each other down (measured: half the throughput).
So the count comes from the CPUs this process may really use (its affinity mask and its
cgroup's CPU quota) shared among the model workers that run beside it.
"""

import math
import os
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")


def _quota(root: Path) -> float | None:
    """CPUs allowed by the cgroup quota (v2 ``cpu.max``, else v1), or None for no limit."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us


def usable_cpus(root: Path = CGROUP) -> int:
    """CPUs this process may run on: its affinity mask, capped by its cgroup's quota."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    quota = _quota(root)
    if quota is not None:
        cpus = min(cpus or 1, max(1, math.floor(quota)))
    return max(1, cpus or 1)


def model_threads(configured: int, model_workers: int, cpus: int | None = None) -> int:
    """``configured`` when set (above 0); else the usable CPUs split among the model
    workers that share them, at least one each."""
    if configured > 0:
        return configured
    available = usable_cpus() if cpus is None else cpus
    return max(1, available // max(1, model_workers))
