"""A source that sends COUNT messages, sleeping between them, and logs each at INFO."""

import logging
import os
import time

import pyarrow as pa

from pinflow import Node

node = Node()
count = int(os.environ.get("COUNT", "40"))
for i in range(count):
    event = node.try_recv()
    if event is not None and event["type"] == "STOP":
        break
    node.send_output("message", pa.array([i]))
    logging.info("Sent message %d", i)
    time.sleep(0.1)
logging.info("Sender finished - sent %d messages", count)
