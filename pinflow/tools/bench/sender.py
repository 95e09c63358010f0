"""Benchmark producer node: hands prepared frames to pinflow one of three ways.

- ``copy``: ``node.send_output(frame)``, one copy into a slot (the API most nodes use);
- ``loan``: ``node.output_buffer(...)`` and ``np.copyto`` into it (a loan with one copy);
- ``inplace``: ``node.output_buffer(...)`` with only the 16-byte stamp written: what a
  message costs beyond its bytes, for a producer that renders or decodes into the slot.

The frames are rendered before timing starts (:mod:`pinflow.tools.bench.frames`), and each
message's metadata says when it was handed over (``sent_ns``, just before the call). With
``--fps`` above 0 one frame goes per event of the node's timer input (``tick``), as a camera
would; with ``--fps 0`` it sends as fast as the output takes them (the max-fps run). It ends
with one ``summary`` line: frames, sent, dropped because the pool was full, timer ticks it
missed.

    pinflow YAML:  module: pinflow.tools.bench.sender
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from pinflow.nodes.node import Node
from pinflow.tools.bench import frames

HOWS = ("copy", "loan", "inplace")
OUTPUT = "image"


def _ticks(node: Node, fps: float) -> Iterator[int]:
    """Yields the number of timer ticks missed before each frame is due; ends on STOP."""
    if fps <= 0:
        while True:
            event = node.next(timeout=0)
            if node.ended or (event is not None and event["type"] == "STOP"):
                return
            yield 0
    last: int | None = None
    for event in node:
        if event["type"] != "INPUT":
            continue
        seq = int(event.get("seq") or 0)
        yield 0 if last is None else max(0, seq - last - 1)
        last = seq


def send(node: Node, how: str, frame: np.ndarray, index: int, pinned: bool) -> bool:
    """Hand ``frame`` over; False if the pool was full (``on_full: drop``)."""
    metadata: dict[str, Any] = {"frame": index, "sent_ns": time.time_ns()}
    if how == "copy":
        return node.send_output(OUTPUT, frame, metadata, pinned=pinned)
    with node.output_buffer(OUTPUT, frame.shape, np.uint8, metadata=metadata,
                            pinned=pinned) as buf:
        if buf is None:
            return False
        if how == "loan":
            np.copyto(buf, frame)
        else:
            frames.stamp_only(buf, index)
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="pinflow.tools.bench.sender",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--how", choices=HOWS, required=True)
    parser.add_argument("--frames", type=int, required=True, help="frames to send, then exit")
    parser.add_argument("--fps", type=float, required=True,
                        help="the rate of the `tick` timer input; 0: no timer, full speed")
    parser.add_argument("--frame-bytes", type=int, default=frames.FRAME_BYTES)
    parser.add_argument("--pinned", action=argparse.BooleanOptionalAction, default=False)
    args = parser.parse_args(argv)
    sources = frames.prepared(frames.shape_for(args.frame_bytes))
    node = Node()
    sent = dropped = missed = index = 0
    for skipped in _ticks(node, args.fps):
        missed += skipped
        if send(node, args.how, sources[index % len(sources)], index, args.pinned):
            sent += 1
        else:
            dropped += 1
        index += 1
        if index >= args.frames:
            break
    node.log("summary", frames=index, sent=sent, dropped_pool_full=dropped,
             ticks_missed=missed)
    node.close()


if __name__ == "__main__":
    main()
