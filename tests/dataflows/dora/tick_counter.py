"""Sends a running count on every tick."""

import pyarrow as pa

from pinflow import Node

node = Node()
count = 0
for event in node:
    if event["type"] == "INPUT":
        node.send_output("count", pa.array([count]))
        count += 1
