"""Records every event; after STOP it keeps asking for events for a second and records
whatever still comes (nothing should: STOP is the last event)."""

import time

from report import report

from pinflow import Node


def main() -> None:
    node = Node()
    before, after = [], []
    stop = None
    for event in node:
        before.append(event["type"])
        if event["type"] == "STOP":
            stop = event["id"]
            break
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        event = node.next(timeout=0.1)
        if event is not None:
            after.append({"type": event["type"], "id": event["id"]})
    report(node.id, {"stop": stop, "inputs_before": before.count("INPUT"), "after": after,
                     "ended": node.ended})


if __name__ == "__main__":
    main()
