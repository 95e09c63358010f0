"""Live statistics a node publishes once a second on ``pinflow/<run>/stats/<node>``.

What seed 001 had to script by hand, built in: per input queue depth and mean occupancy,
message rates in and out, drops, end-to-end latency (sender clock to delivery), how much of
the time the node sat waiting for input, pool occupancy and pinned bytes, CUDA fallback
counters, RSS and CPU. ``pinflow top`` / ``pinflow stats --json`` show them and the launcher
diagnoses starvation and backlog from them.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import psutil

log = logging.getLogger("pinflow.node")

VERSION = 1
INTERVAL_S = 1.0
_SAMPLE_S = 0.1


def _rate(now: dict[str, Any], before: dict[str, Any], key: str, seconds: float) -> float:
    return max(0.0, now.get(key, 0) - before.get(key, 0)) / seconds


class StatsPublisher:
    """Samples queue occupancy at 10 Hz and publishes one JSON report per second.

    ``snapshot()`` returns the node's counters (``Node.stats()``); ``take_latencies()``
    returns and clears the latencies (ms) recorded per input since the last call;
    ``take_waiting()`` returns and clears the seconds spent blocked in ``next()``.
    """

    def __init__(self, publish: Callable[[bytes], None], identity: dict[str, Any],
                 snapshot: Callable[[], dict[str, Any]],
                 take_latencies: Callable[[], dict[str, list[float]]],
                 take_waiting: Callable[[], float], interval: float = INTERVAL_S) -> None:
        self._publish, self._identity = publish, identity
        self._snapshot, self._take_latencies, self._take_waiting = (
            snapshot, take_latencies, take_waiting)
        self._interval = interval
        self._stop = threading.Event()
        self._process = psutil.Process(os.getpid())
        self._process.cpu_percent(None)  # first call only starts the measurement
        self._thread = threading.Thread(target=self._run, daemon=True, name="pinflow-stats")
        self._thread.start()

    def _run(self) -> None:
        previous = self._snapshot()
        started = time.monotonic()
        occupancy: dict[str, list[float]] = {}
        while not self._stop.wait(_SAMPLE_S):
            try:
                current = self._snapshot()
                for name, queue in current["inputs"].items():
                    occupancy.setdefault(name, []).append(queue["queued"] / queue["size"])
                elapsed = time.monotonic() - started
                if elapsed < self._interval:
                    continue
                report = self.build(current, previous, occupancy, elapsed)
                self._publish(json.dumps(report).encode())
                previous, started, occupancy = current, time.monotonic(), {}
            except Exception as exc:  # a stats failure must never take the node down
                log.debug("stats not published: %s", exc)

    def build(self, current: dict[str, Any], previous: dict[str, Any],
              occupancy: dict[str, list[float]], seconds: float) -> dict[str, Any]:
        latencies = self._take_latencies()
        waiting = self._take_waiting()
        inputs = {}
        for name, queue in current["inputs"].items():
            before = previous["inputs"].get(name, {})
            lat = latencies.get(name, [])
            inputs[name] = {
                **queue,
                "occupancy": float(np.mean(occupancy.get(name) or [0.0])),
                "in_rate": _rate(queue, before, "received", seconds),
                "handled_rate": _rate(queue, before, "delivered", seconds),
                "drop_rate": _rate(queue, before, "dropped", seconds),
                "latency_p50_ms": float(np.percentile(lat, 50)) if lat else None,
                "latency_p99_ms": float(np.percentile(lat, 99)) if lat else None,
            }
        outputs = {}
        pinned_bytes = 0
        for name, out in current["outputs"].items():
            before = previous["outputs"].get(name, {})
            sent = out["sent_inline"] + out["sent_shm"]
            sent_before = before.get("sent_inline", 0) + before.get("sent_shm", 0)
            pool = out.get("pool")
            if pool and pool.get("pinned"):
                pinned_bytes += pool["slots"] * pool["slot_bytes"]
            outputs[name] = {**out, "sent": sent,
                             "out_rate": max(0, sent - sent_before) / seconds}
        with self._process.oneshot():
            memory = self._process.memory_info()
            cpu = self._process.cpu_percent(None)
        return {
            "v": VERSION, **self._identity, "t": time.time_ns(), "interval_s": seconds,
            "inputs": inputs, "outputs": outputs, "waiting_frac": min(1.0, waiting / seconds),
            "pinned_bytes": pinned_bytes, "devices": current.get("devices", {}),
            "malformed": current.get("malformed", 0), "rss_bytes": memory.rss,
            "private_bytes": memory.rss - getattr(memory, "shared", 0), "cpu_pct": cpu,
        }

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
