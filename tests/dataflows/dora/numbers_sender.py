"""A node-hub style sender: it names itself (not its YAML id), sends three numbers, exits."""

import pyarrow as pa

from pinflow import Node

node = Node("pyarrow-sender")  # node-hub nodes pass a default name of their own
for i in range(3):
    node.send_output("numbers", pa.array([i]))
