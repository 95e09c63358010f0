"""Sends COUNT small messages as fast as it can, then exits."""

import os

import pyarrow as pa

from pinflow import Node

node = Node()
for i in range(int(os.environ.get("COUNT", "500"))):
    node.send_output("burst", pa.array([i]))
