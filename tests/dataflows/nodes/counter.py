"""Sends COUNT messages (default 20) numbered 0.. on `out`, one per tick, then exits."""

import os

import numpy as np
from report import report

from pinflow import Node


def main() -> None:
    node = Node()
    count = int(os.environ.get("COUNT", "20"))
    sent = 0
    for event in node:
        if event["type"] == "INPUT" and event["id"] == "tick":
            node.send_output("out", np.array([sent], dtype=np.int64),
                             metadata={"run": node.run_id})
            sent += 1
            if sent == count:
                break
    report(node.id, {"sent": sent})


if __name__ == "__main__":
    main()
