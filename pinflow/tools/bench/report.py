"""The whole benchmark as one report: the machine, the device measured, every arm's figures
the H2D bandwidth, and the size sweep. ``--json`` writes it as it is (``schema: 1``: keys are
only ever added, and bump the schema if one changes)."""

from __future__ import annotations

import os
import platform
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import psutil

from pinflow.tools.bench.arms import ARMS, SWEEP, unavailable
from pinflow.tools.bench.frames import FRAME_BYTES
from pinflow.tools.bench.measure import ArmResult, compare_to_floor, measure_arm
from pinflow.transport import torch_cuda

SCHEMA = 1
FPS = 30


def target_device() -> tuple[str, str | None]:
    """``cuda`` where torch's runtime works, else ``cpu`` and why not."""
    found = torch_cuda.probe()
    return ("cuda", None) if found.available else ("cpu", found.reason)


def machine() -> dict[str, Any]:
    return {"cpu_count": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(),
            "ram_gib": round(psutil.virtual_memory().total / 2**30, 1)}


def measure_h2d_bandwidth(nbytes: int = FRAME_BYTES, rounds: int = 100) -> dict[str, float]:
    """GB/s of host-to-device copies from a registered shared-memory mapping vs pageable
    memory, through pinflow's GPU runtime interface (torch's runtime behind it), registering
    on its registration thread: the same calls the data path makes."""
    from pinflow.tools.gpu_check import measure_h2d

    pinned, pageable = measure_h2d(torch_cuda.TorchRuntime(), 0, nbytes, rounds)
    return {"pinned_gbps": pinned, "pageable_gbps": pageable, "ratio": pinned / pageable}


def run(frames: int, max_frames: int, arms: list[str], skipped: dict[str, str] | None = None,
        progress: Callable[[str], None] | None = None, sizes: list[int] | None = None,
        fps: float = FPS) -> dict[str, Any]:
    """Measure ``arms`` (``frames`` at ``fps`` each, then ``max_frames`` unthrottled; 0 skips
    that), then the :data:`~.arms.SWEEP` arms at each of ``sizes`` (bytes); ``skipped`` (arm
    -> why, see :func:`~.arms.default_arms`) goes in the report so the table can say what it
    left out; ``progress`` hears which arm starts."""
    device, reason = target_device()
    say = progress or (lambda _text: None)
    with tempfile.TemporaryDirectory(prefix="pinflow-bench-") as tmp:
        results = []
        for arm in arms:
            say(f"running {arm}: {ARMS[arm].label} ...")
            results.append(measure_arm(arm, frames, max_frames, device, Path(tmp), fps=fps))
        compare_to_floor(results)
        sweep: list[ArmResult] = []
        for size in sizes or []:
            at_size = []
            for arm in SWEEP:
                if unavailable(ARMS[arm]) is None:
                    say(f"running {arm} at {size:,} B ...")
                    at_size.append(measure_arm(arm, frames, max_frames, device, Path(tmp),
                                               fps=fps, frame_bytes=size))
            compare_to_floor(at_size)
            sweep += at_size
    return {
        "schema": SCHEMA, "machine": machine(), "device": device, "no_gpu_reason": reason,
        "frames": frames, "frame_bytes": FRAME_BYTES, "fps": fps,
        "arms": [asdict(r) for r in results],
        "h2d_bandwidth": measure_h2d_bandwidth() if device == "cuda" else None,
        "skipped": dict(skipped or {}),
        "sweep": [asdict(r) for r in sweep],
    }


def failed(report: dict[str, Any]) -> bool:
    """An arm failed: the command exits 1."""
    return any(arm["error"] for arm in [*report["arms"], *report["sweep"]])
