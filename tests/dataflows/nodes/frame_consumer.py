"""Checks every frame (intact, zero-copy, dtype/shape); HOLD=1 keeps every event forever,
SLEEP slows it down. Writes progress to <node>.progress and a report at the end."""

import glob
import os
import time
from pathlib import Path

import numpy as np
from frames import check, segment_of, shape_from_env
from report import report

from pinflow import Node
from pinflow.transport.segment import shm_dir


def main() -> None:
    node = Node()
    hold = os.environ.get("HOLD") == "1"
    delay = float(os.environ.get("SLEEP", "0"))
    shape = shape_from_env()
    progress = Path(os.environ["PINFLOW_TEST_RESULTS"]) / f"{node.id}.progress"
    kept, indices, segments = [], [], set()
    torn = not_zero_copy = wrong_type = 0
    closed = False
    producer_segments_left = None
    for event in node:
        if event["type"] == "INPUT_CLOSED":
            closed = True
            deadline = time.monotonic() + 3
            pattern = f"{shm_dir()}/pinflow-{node.run_id}.producer.*"
            while glob.glob(pattern) and time.monotonic() < deadline:
                time.sleep(0.05)
            producer_segments_left = len(glob.glob(pattern))
            continue
        if event["type"] != "INPUT":
            continue
        frame = event.to_numpy()
        if frame.dtype != np.uint8 or frame.shape != shape:
            wrong_type += 1
        segment = segment_of(frame)
        not_zero_copy += segment is None
        segments.add(segment)
        index = check(frame)
        if index is None:
            torn += 1
        else:
            indices.append(index)
        if hold:
            kept.append(event)
        del frame, event
        tmp = progress.with_suffix(".tmp")
        tmp.write_text(str(len(indices)))
        tmp.replace(progress)
        time.sleep(delay)
    stats = node.stats()
    report(node.id, {"indices": indices, "torn": torn, "not_zero_copy": not_zero_copy,
                     "wrong_type": wrong_type, "closed": closed,
                     "producer_segments_left": producer_segments_left,
                     "dropped": stats["inputs"]["frames"]["dropped"],
                     "segments_mapped": stats["segments_mapped"],
                     "segments": sorted(s for s in segments if s),
                     "malformed": stats["malformed"]})


if __name__ == "__main__":
    main()
