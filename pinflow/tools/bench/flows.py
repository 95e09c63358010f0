"""The dataflow a pinflow arm runs: sender -> probe, built as data and written with
``yaml.safe_dump``, so any work-folder path (spaces, ``: ``, ``#``) reaches the probe intact
and the file is always valid YAML."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pinflow.tools.bench.arms import Arm
from pinflow.tools.bench.frames import FRAME_BYTES, VERIFY_EVERY

CROSS_MACHINE = "far"
"""The ``machine:`` of the cross arm's consumer, served by a daemon in namespace b."""
SLOTS = 4


def dataflow(arm: Arm, frames: int, fps: float, out: Path, device: str,
             frame_bytes: int = FRAME_BYTES) -> dict[str, Any]:
    """``fps`` 0: the sender has no timer and sends as fast as it can (the max-fps run); the
    probe writes one JSON line per frame to ``out``."""
    sender: dict[str, Any] = {
        "id": "sender",
        "module": "pinflow.tools.bench.sender",
        "args": ["--how", arm.how, "--frames", str(frames), "--fps", f"{fps:g}",
                 "--frame-bytes", str(frame_bytes), "--pinned" if arm.pinned else "--no-pinned"],
    }
    if fps > 0:
        sender["inputs"] = {"tick": {"source": f"pinflow/timer/hz/{fps:g}", "queue_size": 1}}
    sender["outputs"] = [{"id": "image", "pinned": arm.pinned, "slots": SLOTS,
                          "slot_bytes": frame_bytes}]
    image: dict[str, Any] = {"source": "sender/image", "queue_size": 2}
    if device != "cpu":
        image["device"] = device
    probe: dict[str, Any] = {"id": "probe", "module": "pinflow.nodes.latency_probe"}
    if arm.cross_host:
        probe["machine"] = CROSS_MACHINE
    # A frame written in place carries no checksum: nothing to verify.
    verify = "0" if arm.how == "inplace" else str(VERIFY_EVERY)
    probe |= {"args": ["--out", str(out), "--stamp", "sent_ns", "--verify-every", verify],
              "inputs": {"image": image}}
    return {"nodes": [sender, probe]}


def write_dataflow(path: Path, arm: Arm, frames: int, fps: float, out: Path, device: str,
                   frame_bytes: int = FRAME_BYTES) -> Path:
    path.write_text(yaml.safe_dump(dataflow(arm, frames, fps, out, device, frame_bytes),
                                   sort_keys=False), encoding="utf-8")
    return path
