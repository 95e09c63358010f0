"""Sends FIRST pinned frames of SHAPE, then SECOND of SHAPE2 (larger: the pool regrows), one
per tick; then waits for the consumer's `done` (or its end) so its segments stay alive."""

import os

import numpy as np
from frames import fill
from report import report

from pinflow import Node


def _shape(name: str) -> tuple[int, ...]:
    return tuple(int(x) for x in os.environ[name].split("x"))


def main() -> None:
    node = Node()
    plan = ([_shape("SHAPE")] * int(os.environ["FIRST"])
            + [_shape("SHAPE2")] * int(os.environ["SECOND"]))
    sent = 0
    for event in node:
        if event["id"] == "done":  # the consumer finished (INPUT) or died (INPUT_CLOSED)
            break
        if event["type"] != "INPUT":
            continue
        if sent < len(plan):
            frame = np.empty(plan[sent], dtype=np.uint8)
            fill(frame, sent)
            node.send_output("frames", frame, metadata={"index": sent}, pinned=True)
            sent += 1
    report(node.id, {"sent": sent, "pools": node.stats()["outputs"]["frames"]["pools_created"]})


if __name__ == "__main__":
    main()
