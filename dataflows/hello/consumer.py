"""Checks every array from the producer; exits non-zero on wrong data."""

import sys

import numpy as np

from pinflow import Node


def main() -> None:
    node = Node()
    received = 0
    for event in node:
        if event["type"] == "INPUT":
            array = event.to_numpy()
            count = event["metadata"]["count"]
            expected = np.arange(6, dtype=np.float32).reshape(2, 3) + count
            if array.dtype != np.float32 or not np.array_equal(array, expected):
                sys.exit(f"wrong data for count {count}: {array!r}")
            received += 1
            if received % 10 == 0:
                node.log("received", count=received)
    node.log("done", received=received)


if __name__ == "__main__":
    main()
