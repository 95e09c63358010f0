"""Sends 0..9, 50 ms apart, then waits GAP seconds and sends 10 and 11, then exits."""

import os
import time

import pyarrow as pa

from pinflow import Node

node = Node()
time.sleep(0.3)  # the async receiver times out once before the first message
for i in range(10):
    node.send_output("numbers", pa.array([i], pa.int64()))
    time.sleep(0.05)
time.sleep(float(os.environ.get("GAP", "1.0")))
for i in (10, 11):
    node.send_output("numbers", pa.array([i], pa.int64()))
