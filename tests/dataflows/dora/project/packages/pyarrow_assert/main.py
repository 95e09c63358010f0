"""Checks that every input equals the literal in $DATA; prints the verdict."""

import argparse
import ast
import os

import pyarrow as pa

from pinflow import Node


def main() -> int:
    parser = argparse.ArgumentParser(description="Arrow assert")
    parser.add_argument("--name", type=str, default="arrow-assert")
    args = parser.parse_args()
    expected = pa.array(ast.literal_eval(os.environ["DATA"]))
    node = Node(args.name)
    checked = 0
    for event in node:
        if event["type"] == "INPUT":
            assert event["value"] == expected, (event["value"], expected)
            checked += 1
            print(f"[PASS] #{checked} data matches: {event['value'].to_pylist()}")
    print(f"Total PASS: {checked}")
    return 0 if checked else 1
