"""Benchmark consumer: makes each frame usable on its target device and records when.

"Usable" means: a device tensor whose copy completed (CUDA), or a host array (CPU). Used by
``pinflow bench`` for the pinflow arms; ``pinflow.tools.baselines`` measures the other arms the
same way. One JSON line per frame: frame, capture_ns, usable_ns, h2d_ns, device, pinned;
then one ``{"summary": ...}`` line with what the input received, dropped (queue overflow)
and refused as malformed, so a soak can account for every frame.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from pinflow.nodes import framing
from pinflow.nodes.node import Node


def usable_on_device(event: Any) -> tuple[str, int | None]:
    """Make the event's payload usable where its input delivers; return (device, h2d_ns)."""
    if event["device"] == "cpu":
        event.to_numpy()
        return "cpu", None
    import torch

    start = time.perf_counter_ns()
    tensor = event.to_torch()
    torch.cuda.current_stream(tensor.device).synchronize()
    return str(tensor.device), time.perf_counter_ns() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON-lines file to write")
    parser.add_argument("--verify-every", type=int, default=30,
                        help="check frame integrity every N frames (default 30)")
    args = parser.parse_args(argv)
    node = Node()
    failures = 0
    with open(args.out, "w", encoding="utf-8") as out:
        for n, event in enumerate(node):
            if event["type"] != "INPUT":
                continue
            device, h2d_ns = usable_on_device(event)
            usable_ns = time.time_ns()
            meta = event["metadata"]
            if n % args.verify_every == 0:
                _index, ok = framing.verify(event.to_numpy())
                failures += not ok
            out.write(json.dumps({
                "frame": meta.get("frame"), "capture_ns": meta.get("capture_ns"),
                "usable_ns": usable_ns, "h2d_ns": h2d_ns, "device": device,
                "pinned": event["pinned"],
            }) + "\n")
            event.release()
        stats = node.stats()
        image = stats["inputs"]["image"]
        out.write(json.dumps({"summary": {
            "received": image["received"], "dropped": image["dropped"],
            "malformed": stats["malformed"], "integrity_failures": failures}}) + "\n")
    if failures:
        raise SystemExit(f"{failures} frame(s) failed the integrity check")


if __name__ == "__main__":
    main()
