"""Keeps its first HOLD frames until the end and checks every frame on arrival and every kept
frame again at the end, so a slot overwritten while it was held shows up as torn."""

import os

import numpy as np
from frames import check, shape_from_env
from report import report

from pinflow import Node


def main() -> None:
    node = Node()
    hold = int(os.environ.get("HOLD", "3"))
    shape = shape_from_env()
    kept: list[tuple[int, np.ndarray]] = []
    indices: list[int] = []
    torn = 0
    closed_after = None
    for event in node:
        if event["type"] == "INPUT_CLOSED":
            closed_after = len(indices)
            continue
        if event["type"] != "INPUT":
            continue
        frame = event.to_numpy()
        index = check(frame) if frame.shape == shape else None
        if index is None:
            torn += 1
        else:
            indices.append(index)
            if len(kept) < hold:
                kept.append((index, frame))
        del frame, event
    # A held slot that the producer reused no longer holds the frame it was read as.
    overwritten = sum(check(frame) != index for index, frame in kept)
    report(node.id, {"indices": indices, "torn": torn, "overwritten": overwritten,
                     "kept": len(kept), "closed_after": closed_after,
                     "malformed": node.stats()["malformed"]})


if __name__ == "__main__":
    main()
