"""The node processes of one host while a run goes on: exits, restarts, memory, the end.

Long-running pipelines otherwise grow their own watchdogs (restart what crashed) and
emergency brakes (kill what leaks before the kernel's OOM killer picks a victim); here they
are YAML keys. ``restart: never | on-failure | always`` with ``max_restarts`` and a doubling
backoff; ``memory_limit`` on a node's private memory (RSS minus shared pages, so the slot
pools a node maps do not count against it), and a warning when the machine runs low. At the
end, nodes that outlive STOP's grace period get SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

import psutil

from pinflow.protocol.control import NodeResult
from pinflow.runtime.child import LAUNCHER_LOST_EXIT
from pinflow.runtime.result import LAUNCHER_LOST_WHY
from pinflow.runtime.spawn import NodeProcess, Spawner
from pinflow.spec import NodeSpec
from pinflow.transport.cleanup import remove_node_segments

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


class Supervisor:
    """Watches the processes of one host's share; ``say`` reports what it does and
    ``declare_gone`` tells a node's consumers it will not come back."""

    def __init__(self, run_id: str, spawner: Spawner, say: Callable[[str], None],
                 declare_gone: Callable[[str], None]) -> None:
        self.run_id, self.spawner = run_id, spawner
        self._say, self._declare_gone = say, declare_gone
        self.procs: dict[str, NodeProcess] = {}
        self._memory = MemoryWatch()

    def add(self, proc: NodeProcess) -> None:
        self.procs[proc.spec.id] = proc

    def alive(self, node_id: str) -> bool:
        """The node's current process runs."""
        proc = self.procs.get(node_id)
        return proc is not None and proc.returncode is None

    def any_alive(self) -> bool:
        """A process runs or a restart is due."""
        return any(p.returncode is None or p.restart_at is not None
                   for p in self.procs.values())

    def reap(self, *, stopping: bool = False) -> None:
        """Handle nodes that exited: unlink the segments a crashed node could not (consumers
        keep their mappings, so no data is torn), then restart it per its policy or declare
        it gone for good so its consumers close their inputs."""
        for proc in self.procs.values():
            code = proc.returncode
            if code is None or proc.reaped:
                continue
            proc.reaped = True
            removed = remove_node_segments(self.run_id, proc.spec.id)
            if code != 0:
                extra = f"; removed {len(removed)} segment(s) it left" if removed else ""
                if code == LAUNCHER_LOST_EXIT:
                    extra += f" ({LAUNCHER_LOST_WHY})"
                self._say(f"node {proc.spec.id!r} exited with code {code}{extra}")
            delay = restart_delay(proc.spec, proc.restarts, code, stopping=stopping)
            if delay is not None:
                proc.restart_at = time.monotonic() + delay
                self._say(f"restarting node {proc.spec.id!r} in {delay:g}s (restart "
                          f"{proc.restarts + 1} of {proc.spec.max_restarts}, policy "
                          f"{proc.spec.restart})")
            else:
                self._finish(proc)

    def restart_due(self, now: float) -> None:
        for proc in self.procs.values():
            if proc.restart_at is not None and now >= proc.restart_at:
                proc.restart_at = None
                proc.restarts += 1
                proc.stopped_why = None
                self.spawner.restart(proc)

    def check_memory(self) -> None:
        warning = self._memory.low_memory_warning()
        if warning:
            self._say(warning)
        for proc in self.procs.values():
            if proc.returncode is not None:
                continue
            why = over_limit(proc.spec, proc.process.pid)
            if why:
                proc.stopped_why = why
                self._say(f"node {proc.spec.id!r} {why}; stopping it (its consumers see its "
                          "outputs closed)")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.process.pid, signal.SIGKILL)

    def cancel_restarts(self) -> None:
        """STOP was announced: a node waiting for its restart is gone for good."""
        for proc in self.procs.values():
            if proc.restart_at is not None:
                self._finish(proc)

    def terminate(self) -> None:
        """After the grace period: SIGTERM to the nodes still running, then SIGKILL."""
        for sig, wait_s in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 5.0)):
            alive = [p for p in self.procs.values() if p.returncode is None]
            if not alive:
                break
            for proc in alive:
                proc.killed = sig.name
                self._say(f"node {proc.spec.id!r} still running after STOP: sending {sig.name}")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.process.pid, sig)
            end = time.monotonic() + wait_s
            while any(p.returncode is None for p in alive) and time.monotonic() < end:
                time.sleep(0.02)

    def kill_all(self) -> None:
        """Last resort on any exit path: no node may outlive the launcher."""
        for proc in self.procs.values():
            if proc.returncode is None:
                proc.killed = proc.killed or "SIGKILL"
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.process.pid, signal.SIGKILL)
                proc.process.wait()
            if proc.reader is not None:
                proc.reader.join(timeout=2.0)

    def results(self, machine: str | None) -> dict[str, NodeResult]:
        """How each node of this host ended (after :meth:`kill_all`)."""
        return {p.spec.id: NodeResult(p.spec.id, p.process.wait(), p.killed, list(p.tail),
                                      str(p.log_path), p.restarts, p.stopped_why, machine)
                for p in self.procs.values()}

    def _finish(self, proc: NodeProcess) -> None:
        """The node will not run again: tell its consumers (they close its inputs)."""
        proc.finished = True
        proc.restart_at = None
        self._declare_gone(proc.spec.id)
