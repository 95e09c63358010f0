"""Ignores STOP and keeps running, to test the SIGTERM escalation."""

import time

from pinflow import Node


def main() -> None:
    node = Node()
    for _event in node:
        pass
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
