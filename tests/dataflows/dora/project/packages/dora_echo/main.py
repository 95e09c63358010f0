"""Forwards every input, value and metadata, on the output of the same name."""

import argparse

from pinflow import Node


def main() -> None:
    parser = argparse.ArgumentParser(description="Echo")
    parser.add_argument("--name", type=str, default="echo")
    args = parser.parse_args()
    node = Node(args.name)
    for event in node:
        if event["type"] == "INPUT":
            node.send_output(event["id"], event["value"], event["metadata"])
