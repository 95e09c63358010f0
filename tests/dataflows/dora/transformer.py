"""Doubles each number into a one-row struct; logs at INFO, says goodbye at STOP."""

import logging

import pyarrow as pa

from pinflow import Node

node = Node()
for event in node:
    if event["type"] == "INPUT":
        n = event["value"][0].as_py()
        node.send_output("transformed", pa.array(
            [{"doubled": 2 * n, "description": f"Message #{n}", "is_even": n % 2 == 0}]))
        logging.info("Transformed message %d", n)
    elif event["type"] == "STOP":
        logging.info("Transformer stopping")
logging.info("Transformer finished")
