"""Built-in node: the end of a camera pipeline; shows how it is doing and judges the run.

It reads the per-frame ``latency`` records of :mod:`pinflow.nodes.gpu_consumer`, prints a
status line about once a second (fps over the last second, latency percentiles so far,
integrity checks, frames missing), optionally keeps every record as JSON lines, and prints a
summary at the end. ``--expect-frames`` turns the summary into a verdict: too few frames or
any failed integrity check exits non-zero, so ``pinflow run`` fails on bad data.

    pinflow YAML:  module: pinflow.nodes.sink   inputs: {latency: gpu/latency}
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import numpy as np


class Tracker:
    """Running totals over the latency records; pure, so tests can feed it directly."""

    def __init__(self, window_s: float = 1.0) -> None:
        self.window_s = window_s
        self.latencies_ns: list[int] = []
        self.frames: set[int] = set()
        self.passed = 0
        self.failed = 0
        self.devices: set[str] = set()
        self.camera_dropped = 0
        self.queue_dropped = 0
        self._recent: collections.deque[float] = collections.deque()

    def add(self, record: dict[str, Any], metadata: dict[str, Any], now: float) -> None:
        """Count one record that arrived at monotonic time ``now``."""
        self.latencies_ns.append(int(record["latency_ns"]))
        self.frames.add(int(record["frame"]))
        self.devices.add(str(record["device"]))
        if record.get("verified") is True:
            self.passed += 1
        elif record.get("verified") is False:
            self.failed += 1
        # Both counters are cumulative at their source: the latest value is the total.
        self.camera_dropped = max(self.camera_dropped, int(metadata.get("camera_dropped") or 0))
        self.queue_dropped = max(self.queue_dropped, int(metadata.get("queue_dropped") or 0))
        self._recent.append(now)

    def fps(self, now: float) -> float:
        """Records that arrived within the last ``window_s`` seconds, per second."""
        while self._recent and self._recent[0] <= now - self.window_s:
            self._recent.popleft()
        return len(self._recent) / self.window_s

    @property
    def missing(self) -> int:
        """Frame numbers never seen between 0 and the highest one: drops anywhere upstream."""
        return max(self.frames) + 1 - len(self.frames) if self.frames else 0

    def percentiles_ms(self) -> dict[str, float]:
        if not self.latencies_ns:
            return {"p50": float("nan"), "p99": float("nan"), "max": float("nan")}
        values = np.asarray(self.latencies_ns, dtype=np.float64) / 1e6
        p50, p99 = np.percentile(values, [50, 99])
        return {"p50": float(p50), "p99": float(p99), "max": float(values.max())}

    def status_line(self, now: float) -> str:
        pct = self.percentiles_ms()
        return (f"{self.fps(now):5.1f} fps | latency p50 {pct['p50']:.1f} ms "
                f"p99 {pct['p99']:.1f} ms | frames {len(self.latencies_ns)} | integrity "
                f"{self.passed} ok {self.failed} failed | missing {self.missing} "
                f"(camera pool-full {self.camera_dropped}, consumer queue "
                f"{self.queue_dropped})")

    def summary(self) -> dict[str, Any]:
        pct = self.percentiles_ms()
        return {"frames": len(self.latencies_ns), "p50_ms": round(pct["p50"], 3),
                "p99_ms": round(pct["p99"], 3), "max_ms": round(pct["max"], 3),
                "integrity_passed": self.passed, "integrity_failed": self.failed,
                "missing": self.missing, "camera_dropped": self.camera_dropped,
                "queue_dropped": self.queue_dropped, "devices": sorted(self.devices)}

    def problems(self, expect_frames: int) -> list[str]:
        """Why the run is bad, if it is: too few frames, or integrity failures."""
        found = []
        if expect_frames and len(self.latencies_ns) < expect_frames:
            found.append(f"expected {expect_frames} frames, got {len(self.latencies_ns)}")
        if self.failed:
            found.append(f"{self.failed} frame(s) failed the integrity check")
        return found


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="pinflow.nodes.sink",
        description="Show fps, latency and integrity of the latency records it receives; "
                    "print a summary at the end.")
    parser.add_argument("--out", metavar="PATH",
                        help="write every record as a JSON line here; environment variables "
                             "are expanded and a relative path starts at the YAML's folder")
    parser.add_argument("--expect-frames", type=int, default=0, metavar="N",
                        help="exit 1 if fewer than N frames arrived or any integrity check "
                             "failed (default 0: never fail)")
    parser.add_argument("--status-every", type=float, default=1.0, metavar="SECONDS",
                        help="seconds between status lines; 0 prints none (default 1)")
    return parser.parse_args(argv)


def _open_out(path: str | None) -> TextIO | None:
    if not path:
        return None
    target = Path(os.path.expandvars(path)).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    return open(target, "w", encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out = _open_out(args.out)
    from pinflow.nodes.node import Node

    node = Node()
    tracker = Tracker()
    last_status = time.monotonic()
    for event in node:
        if event["type"] != "INPUT":
            continue
        now = time.monotonic()
        for record in event["value"].to_pylist():
            tracker.add(record, event["metadata"], now)
            if out is not None:
                out.write(json.dumps({k: record.get(k) for k in
                                      ("frame", "latency_ns", "device", "verified")}) + "\n")
        if args.status_every and now - last_status >= args.status_every:
            last_status = now
            print(tracker.status_line(now), flush=True)
            if out is not None:
                out.flush()
    if out is not None:
        out.close()
    summary = tracker.summary()
    print("summary: " + " ".join(f"{k}={v}" for k, v in summary.items()), flush=True)
    problems = tracker.problems(args.expect_frames)
    node.close()
    if problems:
        print("sink: run failed: " + "; ".join(problems), file=sys.stderr, flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
