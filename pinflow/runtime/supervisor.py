"""Per-node policies the launcher enforces while a run goes on: restarts and memory.

Long-running pipelines otherwise grow their own watchdogs (restart what crashed) and
emergency brakes (kill what leaks before the kernel's OOM killer picks a victim); here they
are YAML keys. ``restart: never | on-failure | always`` with ``max_restarts`` and a doubling
backoff; ``memory_limit`` on a node's private memory (RSS minus shared pages, so the slot
pools a node maps do not count against it), and a warning when the machine runs low.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import psutil

from pinflow.spec import NodeSpec

MAX_BACKOFF_S = 30.0
LOW_MEMORY_ENV = "PINFLOW_MIN_AVAILABLE_MEMORY"
LOW_MEMORY_FRACTION = 0.05
WARN_EVERY_S = 30.0


def restart_delay(spec: NodeSpec, restarts: int, returncode: int, *, stopping: bool
                  ) -> float | None:
    """Seconds until the node should be started again, or ``None`` for "do not"."""
    if stopping or restarts >= spec.max_restarts:
        return None
    failed = returncode != 0
    if spec.restart == "always" or (spec.restart == "on-failure" and failed):
        return min(MAX_BACKOFF_S, spec.restart_backoff * 2**restarts)
    return None


def private_memory(pid: int) -> int | None:
    """RSS minus shared pages (file and shmem), i.e. what a leak grows; None if gone."""
    try:
        info = psutil.Process(pid).memory_info()
    except psutil.Error:
        return None
    return info.rss - getattr(info, "shared", 0)


@dataclass
class MemoryWatch:
    """Warns, at most every 30 s, when the machine's available memory runs low."""

    threshold: int = 0
    _warned_at: float = -WARN_EVERY_S

    def __post_init__(self) -> None:
        if not self.threshold:
            raw = os.environ.get(LOW_MEMORY_ENV)
            total = psutil.virtual_memory().total
            self.threshold = int(raw) if raw else int(total * LOW_MEMORY_FRACTION)

    def low_memory_warning(self) -> str | None:
        available = psutil.virtual_memory().available
        now = time.monotonic()
        if available >= self.threshold or now - self._warned_at < WARN_EVERY_S:
            return None
        self._warned_at = now
        return (f"machine memory is low: {available / 2**20:.0f} MiB available (warning below "
                f"{self.threshold / 2**20:.0f} MiB, {LOW_MEMORY_ENV}); set `memory_limit` on "
                "nodes to stop a leaking one before the kernel's OOM killer picks a victim")


def over_limit(spec: NodeSpec, pid: int) -> str | None:
    """Why the node must be stopped for memory, or None."""
    if spec.memory_limit is None:
        return None
    used = private_memory(pid)
    if used is None or used <= spec.memory_limit:
        return None
    return (f"exceeded its memory_limit: private memory {used / 2**20:.1f} MiB > "
            f"{spec.memory_limit / 2**20:.1f} MiB")
