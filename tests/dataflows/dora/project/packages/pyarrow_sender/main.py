"""Sends the literal in $DATA once, as a pyarrow array."""

import argparse
import ast
import os

import pyarrow as pa

from pinflow import Node


def main() -> None:
    parser = argparse.ArgumentParser(description="Simple arrow sender")
    parser.add_argument("--name", type=str, default="pyarrow-sender")
    args = parser.parse_args()
    data = ast.literal_eval(os.environ["DATA"])
    node = Node(args.name)
    node.send_output("data", pa.array(data))
