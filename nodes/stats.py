"""Live statistics a node publishes once a second on ``pinflow/<run>/stats/<node>``.

What one would otherwise script and plot by hand to find a pipeline's bottleneck, built
in: per input queue depth and mean occupancy,
message rates in and out, drops, end-to-end latency (sender clock to delivery), how much of
the time the node sat waiting for input, pool occupancy and pinned bytes, CUDA fallback
counters, RSS and CPU. ``pinflow top`` / ``pinflow stats --json`` show them and the launcher
diagnoses starvation and backlog from them.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

import msgspec
import psutil

from pinflow.protocol.stats import (
    STATS_REPORT,
    InputReport,
    NodeStats,
    OutputReport,
    OutputStats,
    QueueStats,
    Reporter,
    StatsReport,
)

log = logging.getLogger("pinflow.node")

INTERVAL_S = 1.0
"""How often the stats thread wakes: to publish a report, look for drops and push on link
backlogs. Every node pays for its wake-ups, most of it in caches gone cold while it slept:
on the 2-vCPU development VM the stats thread of a node taking 30 frames a second cost
~40 µs of CPU per frame waking four times a second, ~22 µs waking once (per thread, from
``/proc/<pid>/task/*/schedstat``; one pair of runs). Queue fill needs no sampling: the
queues keep it as they change (``InputQueue.take_occupancy``)."""


def _rate(now: int, before: int, seconds: float) -> float:
    return max(0, now - before) / seconds


def percentile(ordered: list[float], q: float) -> float:
    """``q``-th percentile of sorted values, interpolated between the closest ranks (what
    ``numpy.percentile`` computes by default). In plain Python: the report's per-input part,
    numpy's mean and percentiles included, took 0.3-0.5 ms a second, cold."""
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class StatsPublisher:
    """Publishes one report per ``interval``, from a thread that wakes only for that.

    ``snapshot()`` returns the node's counters (``Node`` counters, typed), taken once per
    report; ``occupancy()`` the mean fill (0..1) of each input queue since the last call;
    ``take_latencies()`` returns and clears the latencies (ms) recorded per input since the
    last call; ``take_waiting()`` returns and clears the seconds spent blocked in
    ``next()``.
    """

    def __init__(self, publish: Callable[[bytes], None], identity: Reporter,
                 snapshot: Callable[[], NodeStats],
                 take_latencies: Callable[[], dict[str, list[float]]],
                 take_waiting: Callable[[], float], interval: float = INTERVAL_S, *,
                 occupancy: Callable[[], dict[str, float]] | None = None) -> None:
        self._publish, self._identity = publish, identity
        self._snapshot, self._take_latencies, self._take_waiting = (
            snapshot, take_latencies, take_waiting)
        self._occupancy = occupancy or (lambda: {
            name: queue.queued / queue.size for name, queue in snapshot().inputs.items()})
        self._interval = interval
        self.on_sample: list[Callable[[], None]] = []
        """Called at every wake-up (once per report), on the stats thread: keep them
        cheap."""
        self._stop = threading.Event()
        self._process = psutil.Process(os.getpid())
        self._process.cpu_percent(None)  # first call only starts the measurement
        self._thread = threading.Thread(target=self._run, daemon=True, name="pinflow-stats")
        self._thread.start()

    def _run(self) -> None:
        previous = self._snapshot()
        started = time.monotonic()
        while not self._stop.wait(max(0.0, started + self._interval - time.monotonic())):
            try:
                for hook in self.on_sample:
                    hook()
                occupancy = self._occupancy()
                elapsed = time.monotonic() - started
                current = self._snapshot()
                report = self.build(current, previous, occupancy, elapsed)
                self._publish(STATS_REPORT.encode(report))
                previous, started = current, time.monotonic()
            except Exception as exc:  # a stats failure must never take the node down
                log.debug("stats not published: %s", exc)
                started = time.monotonic()

    def build(self, current: NodeStats, previous: NodeStats,
              occupancy: dict[str, float], seconds: float) -> StatsReport:
        latencies = self._take_latencies()
        waiting = self._take_waiting()
        inputs = {}
        for name, queue in current.inputs.items():
            before = previous.inputs.get(name) or _NO_QUEUE
            lat = sorted(latencies.get(name, ()))
            inputs[name] = InputReport(
                **msgspec.structs.asdict(queue),
                occupancy=occupancy.get(name, 0.0),
                in_rate=_rate(queue.received, before.received, seconds),
                handled_rate=_rate(queue.delivered, before.delivered, seconds),
                drop_rate=_rate(queue.dropped, before.dropped, seconds),
                latency_p50_ms=percentile(lat, 50) if lat else None,
                latency_p99_ms=percentile(lat, 99) if lat else None,
            )
        outputs = {}
        pinned_bytes = 0
        for name, out in current.outputs.items():
            before_out = previous.outputs.get(name) or _NO_OUTPUT
            sent = out.sent_inline + out.sent_shm
            sent_before = before_out.sent_inline + before_out.sent_shm
            if out.pool is not None and out.pool.pinned:
                pinned_bytes += out.pool.slots * out.pool.slot_bytes
            outputs[name] = OutputReport(**msgspec.structs.asdict(out), sent=sent,
                                         out_rate=max(0, sent - sent_before) / seconds)
        with self._process.oneshot():
            memory = self._process.memory_info()
            cpu = self._process.cpu_percent(None)
        return StatsReport(
            **msgspec.structs.asdict(self._identity), t=time.time_ns(), interval_s=seconds,
            inputs=inputs, outputs=outputs, waiting_frac=min(1.0, waiting / seconds),
            pinned_bytes=pinned_bytes, devices=current.devices, malformed=current.malformed,
            rss_bytes=memory.rss, private_bytes=memory.rss - getattr(memory, "shared", 0),
            cpu_pct=cpu,
        )

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)


_NO_QUEUE = QueueStats(source="", queued=0, size=1, received=0, dropped=0, delivered=0,
                       closed=False)
_NO_OUTPUT = OutputStats(pool=None)
