"""Leaks 20 MB of private memory per tick, on purpose, and forwards the tick."""

import numpy as np

from pinflow import Node


def main() -> None:
    node = Node()
    hoard = []
    for event in node:
        if event["type"] == "INPUT":
            hoard.append(np.ones(20_000_000 // 8))
            node.send_output("out", np.array([len(hoard)], dtype=np.int64))


if __name__ == "__main__":
    main()
