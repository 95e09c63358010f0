"""Benchmark consumer node: makes each frame usable where its input delivers and records when.

"Usable" means: a device tensor whose copy completed (CUDA), or a host array of which one
byte per page was read (CPU; :func:`pinflow.tools.bench.frames.touch_pages`). One JSON line
per frame: frame, sent_ns (the sender's, from the metadata), usable_ns, h2d_ns, device,
pinned; then one ``{"summary": ...}`` line with what the input received, dropped (queue
overflow) and refused as malformed, and how many checked frames failed their checksum, so a
soak can account for every frame. ``pinflow.tools.baselines`` records the other arms alike.

    pinflow YAML:  module: pinflow.tools.bench.probe
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from pinflow.nodes import framing
from pinflow.nodes.node import Node
from pinflow.tools.bench import frames


def usable(event: Any) -> tuple[str, int | None]:
    """Make the event's payload usable where its input delivers; return (device, h2d_ns)."""
    if event["device"] == "cpu":
        frames.touch_pages(event.to_numpy())
        return "cpu", None
    import torch

    start = time.perf_counter_ns()
    tensor = event.to_torch()
    torch.cuda.current_stream(tensor.device).synchronize()
    return str(tensor.device), time.perf_counter_ns() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="pinflow.tools.bench.probe",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON-lines file to write")
    parser.add_argument("--verify-every", type=int, default=30,
                        help="check the integrity of every N-th frame (default 30; 0: never, "
                             "for frames written in place, which carry no checksum)")
    args = parser.parse_args(argv)
    node = Node()
    failures = 0
    with open(args.out, "w", encoding="utf-8") as out:
        for n, event in enumerate(node):
            if event["type"] != "INPUT":
                continue
            device, h2d_ns = usable(event)
            usable_ns = time.time_ns()
            meta = event["metadata"]
            if args.verify_every and n % args.verify_every == 0:
                failures += not framing.verify(event.to_numpy())[1]
            out.write(json.dumps({
                "frame": meta.get("frame"), "sent_ns": meta.get("sent_ns"),
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
