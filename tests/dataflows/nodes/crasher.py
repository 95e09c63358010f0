"""Raises on its third input, to test how the launcher reports a failed node;
EARLY=1 dies before it even creates its Node (a broken import, a bad argument)."""

import os

from pinflow import Node


def main() -> None:
    if os.environ.get("EARLY") == "1":
        raise SystemExit("crasher died before creating its Node, on purpose")
    node = Node()
    for n, event in enumerate(node):
        if event["type"] == "INPUT" and n == 2:
            raise RuntimeError("crasher failed on purpose")


if __name__ == "__main__":
    main()
