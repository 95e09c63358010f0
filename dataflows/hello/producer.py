"""Sends a 2x3 float32 array whose values encode the tick count, on every timer tick."""

import numpy as np

from pinflow import Node


def main() -> None:
    node = Node()
    count = 0
    for event in node:
        if event["type"] == "INPUT" and event["id"] == "tick":
            data = np.arange(6, dtype=np.float32).reshape(2, 3) + count
            node.send_output("numbers", data, metadata={"count": count})
            count += 1
    node.log("done", sent=count)


if __name__ == "__main__":
    main()
