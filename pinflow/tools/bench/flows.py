"""The dataflow a pinflow arm runs: camera -> latency probe, built as data and written with
``yaml.safe_dump``, so any work-folder path (spaces, ``: ``, ``#``) reaches the probe intact
and the file is always valid YAML."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pinflow.tools.bench.arms import Arm

FRAME_BYTES = 1920 * 1080 * 4
CROSS_MACHINE = "far"
"""The ``machine:`` of the cross arm's consumer, served by a daemon in namespace b."""


def dataflow(arm: Arm, frames: int, fps: float, out: Path, device: str) -> dict[str, Any]:
    """``fps`` 0 drives the camera as fast as a 1 kHz timer goes (the max-fps run); the
    probe writes one JSON line per frame to ``out``."""
    rate = f"pinflow/timer/hz/{fps:g}" if fps > 0 else "pinflow/timer/hz/1000"
    camera = {
        "id": "camera",
        "module": "pinflow.nodes.camera",
        "args": ["--frames", str(frames), "--pinned" if arm.pinned else "--no-pinned"],
        "inputs": {"tick": {"source": rate, "queue_size": 1}},
        "outputs": [{"id": "image", "pinned": arm.pinned, "slots": 4,
                     "slot_bytes": FRAME_BYTES}],
    }
    image: dict[str, Any] = {"source": "camera/image", "queue_size": 2}
    if device != "cpu":
        image["device"] = device
    probe: dict[str, Any] = {"id": "probe", "module": "pinflow.nodes.latency_probe"}
    if arm.cross_host:
        probe["machine"] = CROSS_MACHINE
    probe |= {"args": ["--out", str(out)], "inputs": {"image": image}}
    return {"nodes": [camera, probe]}


def write_dataflow(path: Path, arm: Arm, frames: int, fps: float, out: Path,
                   device: str) -> Path:
    path.write_text(yaml.safe_dump(dataflow(arm, frames, fps, out, device), sort_keys=False),
                    encoding="utf-8")
    return path
