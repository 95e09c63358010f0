"""Latency probe node: makes each frame usable where its input delivers and records when.

"Usable" means: a device tensor whose copy completed (CUDA), or a host array of which one
byte per page was read (CPU; :func:`pinflow.nodes.framing.touch_pages`), so the figure
includes the consumer really reaching the bytes, not only their descriptor. One JSON line
per frame (kept in memory and written in batches: ``pinflow.nodes.frame_log``): frame, the
producer's time stamp (the metadata key ``--stamp`` names: the camera node's
``capture_ns`` by default, the bench sender's ``sent_ns``), usable_ns, h2d_ns, device,
pinned, read_ns; then one ``{"summary": ...}`` line with what the input received, dropped
(queue overflow) and refused as malformed, and how many checked frames failed their
checksum, so a soak can account for every frame. ``pinflow bench`` runs it for its pinflow
arms; ``pinflow.tools.baselines`` records the other arms alike.

    pinflow YAML:  module: pinflow.nodes.latency_probe
                   args: [--out, latencies.jsonl]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from pinflow.nodes import framing
from pinflow.nodes.frame_log import FrameLog
from pinflow.nodes.node import Node


def usable(event: Any) -> tuple[str, int | None, int | None]:
    """Make the event's payload usable where its input delivers; return (device, h2d_ns,
    read_ns): the device copy's time, or on the CPU the page read's."""
    if event["device"] == "cpu":
        return "cpu", None, framing.timed_touch_pages(event.to_numpy())
    import torch

    start = time.perf_counter_ns()
    tensor = event.to_torch()
    torch.cuda.current_stream(tensor.device).synchronize()
    return str(tensor.device), time.perf_counter_ns() - start, None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="pinflow.nodes.latency_probe",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON-lines file to write")
    parser.add_argument("--stamp", default="capture_ns",
                        help="metadata key with the producer's time.time_ns() stamp "
                             "(default capture_ns, as the camera node sets it)")
    parser.add_argument("--verify-every", type=int, default=30,
                        help="check the integrity of every N-th frame (default 30; 0: never, "
                             "for frames written in place, which carry no checksum)")
    args = parser.parse_args(argv)
    node = Node()
    failures = 0
    with FrameLog(args.out, stamp=args.stamp) as out:
        for n, event in enumerate(node):
            if event["type"] != "INPUT":
                continue
            device, h2d_ns, read_ns = usable(event)
            usable_ns = time.time_ns()
            meta = event["metadata"]
            if args.verify_every and n % args.verify_every == 0:
                failures += not framing.verify(event.to_numpy())[1]
            out.log(meta.get("frame"), meta.get(args.stamp), h2d_ns, device, event["pinned"],
                    usable_ns=usable_ns, read_ns=read_ns)
            event.release()
        stats = node.stats()
        image = stats["inputs"]["image"]
        out.write({"summary": {
            "received": image["received"], "dropped": image["dropped"],
            "malformed": stats["malformed"], "integrity_failures": failures}})
    if failures:
        raise SystemExit(f"{failures} frame(s) failed the integrity check")


if __name__ == "__main__":
    main()
