"""Keeps its first HOLD frames, announces it (<node>.holding), and after the test paused and
resumed it (the test writes <node>.resumed) checks every held frame byte by byte, then keeps
receiving; reports what it held, what it found, what came after and how its stream ended."""

import os
from pathlib import Path

from frames import check
from report import report

from pinflow import Node


def main() -> None:
    node = Node()
    results = Path(os.environ["PINFLOW_TEST_RESULTS"])
    want = int(os.environ.get("HOLD", "4"))
    held: list = []
    after_resume: list[int] = []
    checked = None
    stop_reason = None
    closed = False
    while True:
        event = node.next(timeout=0.1)
        if checked is None and (results / f"{node.id}.resumed").exists():
            # The frames we kept must be exactly what was sent, whatever the pause did.
            checked = [{"expected": index, "found": check(frame)} for index, frame in held]
            held.clear()
        if event is None:
            if node.ended:
                break
            continue
        if event["type"] == "STOP":
            stop_reason = event["id"]
            break
        if event["type"] == "INPUT_CLOSED":
            closed = True
            continue
        frame = event.to_numpy()
        index = check(frame)
        if len(held) < want and checked is None:
            held.append((index, frame))
            if len(held) == want:
                (results / f"{node.id}.holding").write_text(str(want))
        elif checked is not None and index is not None:
            after_resume.append(index)
        del frame, event
    report(node.id, {"checked": checked, "after_resume": after_resume,
                     "stop_reason": stop_reason, "closed": closed})


if __name__ == "__main__":
    main()
