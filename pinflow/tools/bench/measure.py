"""One arm's figures: latency, delivery, CPU, memory and pinned bytes of its 30 Hz run, plus
the delivery rate of an unthrottled run (max fps)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pinflow.tools.bench.arms import ARMS, FLOOR, unavailable
from pinflow.tools.bench.frames import FRAME_BYTES
from pinflow.tools.bench.runner import run_arm

MIB = 2**20
STARTUP_FRAMES = 100
"""``startup_max_ms`` is the worst latency of this many first frames."""


@dataclass
class ArmResult:
    """One transport's figures. Latencies in ms; CPU in % of one core; RSS in MiB. Its
    fields, in this order, are the ``--json`` report's per-arm keys (``schema: 1``)."""

    arm: str
    label: str
    frames: int
    delivered: int
    dropped: int
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    producer_cpu_pct: float | None
    consumer_cpu_pct: float | None
    producer_rss_mib: float
    consumer_rss_mib: float
    pinned_mib: float
    max_fps: float | None
    h2d_ms_p50: float | None
    device: str
    error: str | None = None
    delivered_fps: float | None = None
    """Rate at which frames became usable in the 30 Hz run (first to last delivery)."""
    gateway_cpu_pct: float | None = None
    """Cross-host arm only: the launcher and the daemon together (both wire gateways, plus
    their supervision), on top of the producer and consumer columns."""
    latencies_ms: list[float] = field(default_factory=list)
    """Per delivered frame, in delivery order (for plots and your own statistics)."""
    startup_max_ms: float | None = None
    """The worst latency of the first ``STARTUP_FRAMES`` frames delivered: what start-up
    costs (pools created, segments mapped, links warmed)."""
    p50_vs_floor: float | None = None
    """``p50_ms`` over the floor arm's ``p50_ms`` in the same run (None without a floor)."""
    frame_bytes: int = FRAME_BYTES
    max_run_frames: int = 0
    """Frames the producer sent in the unthrottled run (0: not run)."""
    max_run_delivered: int = 0
    """Of those, frames the consumer got: ``max_fps`` is their rate. Fewer than
    ``max_run_frames`` when the producer outran the path and frames were dropped on the way
    (queues drop the oldest, counted where they drop)."""
    read_ms_p50: float | None = None
    """On the CPU: how long the consumer took to read one byte of every page of a frame
    (median), a part of ``p50_ms`` that grows with the frame, whatever carried it."""


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def delivery_rate(records: list[dict[str, Any]]) -> float | None:
    """Frames per second at which ``records`` became usable, first to last."""
    if len(records) < 2:
        return None
    span = (records[-1]["usable_ns"] - records[0]["usable_ns"]) / 1e9
    return (len(records) - 1) / span if span > 0 else None


def measure_arm(name: str, frames: int, max_frames: int, device: str, work: Path,
                fps: float = 30.0, frame_bytes: int = FRAME_BYTES) -> ArmResult:
    """Arm ``name``: ``frames`` at ``fps``, then ``max_frames`` unthrottled (0: skip)."""
    arm = ARMS[name]
    if (reason := unavailable(arm)) is not None:
        return ArmResult(
            arm=name, label=arm.label, frames=frames, delivered=0, dropped=frames, p50_ms=None,
            p99_ms=None, max_ms=None, producer_cpu_pct=None, consumer_cpu_pct=None,
            producer_rss_mib=0.0, consumer_rss_mib=0.0, pinned_mib=0.0, max_fps=None,
            h2d_ms_p50=None, device=device,
            error=f"{'cross-host' if arm.cross_host else name} arm unavailable: {reason}",
            frame_bytes=frame_bytes)
    run = run_arm(arm, frames, fps, device, work, frame_bytes)
    records, sampler = run.records, run.sampler
    lat = [(r["usable_ns"] - r["sent_ns"]) / 1e6 for r in records if r.get("sent_ns")]
    window = ((records[0]["sent_ns"] / 1e9, records[-1]["usable_ns"] / 1e9) if records
              else (0.0, 0.0))
    h2d = [r["h2d_ns"] / 1e6 for r in records if r.get("h2d_ns") is not None]
    read = [r["read_ns"] / 1e6 for r in records if r.get("read_ns") is not None]
    max_fps, max_delivered = None, 0
    if max_frames:
        max_run = run_arm(arm, max_frames, 0, device, work, frame_bytes)
        max_fps, max_delivered = delivery_rate(max_run.records), len(max_run.records)
        run.error = run.error or max_run.error
    # zshm's consumer pins one staging frame of its own on a GPU; pinflow's pools are counted
    # from what the arm's processes map.
    staging = frame_bytes if arm.baseline == "shm" and device != "cpu" else 0
    alone = arm.baseline == "memcpy"  # one process: it has no consumer
    return ArmResult(
        arm=name, label=arm.label, frames=frames, delivered=len(records),
        dropped=frames - len(records),
        p50_ms=percentile(lat, 50), p99_ms=percentile(lat, 99), max_ms=max(lat) if lat else None,
        producer_cpu_pct=sampler.cpu_pct("producer", *window),
        consumer_cpu_pct=None if alone else sampler.cpu_pct("consumer", *window),
        producer_rss_mib=sampler.rss.get("producer", 0) / MIB,
        consumer_rss_mib=sampler.rss.get("consumer", 0) / MIB,
        pinned_mib=(sampler.pinned_bytes + staging) / MIB,
        max_fps=max_fps, h2d_ms_p50=percentile(h2d, 50),
        device=records[0]["device"] if records else device, error=run.error, latencies_ms=lat,
        delivered_fps=delivery_rate(records),
        gateway_cpu_pct=(sampler.cpu_pct("gateway", *window)
                         if arm.cross_host and arm.baseline is None else None),
        startup_max_ms=max(lat[:STARTUP_FRAMES]) if lat else None, frame_bytes=frame_bytes,
        max_run_frames=max_frames, max_run_delivered=max_delivered,
        read_ms_p50=percentile(read, 50),
    )


def compare_to_floor(results: list[ArmResult]) -> None:
    """Fill each result's ``p50_vs_floor`` from the floor arm of the same list, if any."""
    floor = next((r for r in results if r.arm == FLOOR and r.p50_ms), None)
    for result in results:
        if floor is not None and result.p50_ms is not None:
            result.p50_vs_floor = result.p50_ms / floor.p50_ms
