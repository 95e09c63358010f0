"""A producer bound by its own work (like decoding): it never waits in next() and keeps a
core busy."""

import time

import numpy as np

from pinflow import Node


def main() -> None:
    node = Node()
    count = 0
    while node.next(timeout=0) is None and not node.ended:
        end = time.monotonic() + 0.2
        while time.monotonic() < end:  # stands for 0.2 s of work, outside the event loop
            pass
        node.send_output("out", np.array([count], dtype=np.int64))
        count += 1


if __name__ == "__main__":
    main()
