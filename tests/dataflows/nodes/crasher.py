"""Raises on its third input, to test how the launcher reports a failed node."""

from pinflow import Node


def main() -> None:
    node = Node()
    for n, event in enumerate(node):
        if event["type"] == "INPUT" and n == 2:
            raise RuntimeError("crasher failed on purpose")


if __name__ == "__main__":
    main()
