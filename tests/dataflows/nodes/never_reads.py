"""Joins the run and never reads an event (not even STOP): it holds every slot it is sent
until the launcher kills it."""

import time

from pinflow import Node


def main() -> None:
    node = Node()
    print(f"{node.id} joined and will never read", flush=True)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
