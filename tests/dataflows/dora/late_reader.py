"""Reads nothing until its producer has sent everything and exited, then records every
value and how the stream ended."""

import os
import time

from results import save

from pinflow import Node

node = Node()
time.sleep(float(os.environ.get("SLEEP", "1.0")))
values, ends = [], []
for event in node:
    if event["type"] == "INPUT":
        values += event["value"].to_pylist()
    else:
        ends.append([event["type"], event["id"]])
save("late", {"values": values, "ends": ends,
              "dropped": node.stats()["inputs"]["burst"]["dropped"]})
