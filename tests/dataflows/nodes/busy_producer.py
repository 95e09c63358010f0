"""A producer bound by its own work (like a network receive): it never waits in next()."""

import time

import numpy as np

from pinflow import Node


def main() -> None:
    node = Node()
    count = 0
    while node.next(timeout=0) is None and not node.ended:
        time.sleep(0.2)  # stands for a slow network read, outside the node's event loop
        node.send_output("out", np.array([count], dtype=np.int64))
        count += 1


if __name__ == "__main__":
    main()
