"""dora's echo: forwards every input, value and metadata, on the output of the same name."""

from pinflow import Node

node = Node("echo")
for event in node:
    if event["type"] == "INPUT":
        node.send_output(event["id"], event["value"], event["metadata"])
