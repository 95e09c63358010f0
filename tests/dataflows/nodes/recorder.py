"""Records every event it gets (type, id, value) until its stream ends; SLEEP slows it."""

import os
import time

from report import report

from pinflow import Node


def main() -> None:
    node = Node()
    delay = float(os.environ.get("SLEEP", "0"))
    seen = []
    runs = set()
    for event in node:
        entry = {"type": event["type"], "id": event["id"]}
        if event["type"] == "INPUT":
            entry["value"] = event["value"].to_pylist()
            entry["sent_ns"] = event["sent_ns"]
            runs.update([event["metadata"].get("run")] if "run" in event["metadata"] else [])
            time.sleep(delay)
        seen.append(entry)
    report(node.id, {"events": seen, "runs": sorted(runs), "run_id": node.run_id})


if __name__ == "__main__":
    main()
