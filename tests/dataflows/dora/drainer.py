"""Sleeps while messages queue up, then drains them; try_recv and is_empty never block."""

import time

from results import save

from pinflow import Node

node = Node()
report = {"empty_at_start": node.is_empty(), "try_recv_at_start": node.try_recv()}
time.sleep(0.9)  # 0..9 arrive meanwhile
report["empty_after_sleep"] = node.is_empty()
first = node.drain()
report["first_drain"] = [e["value"].to_pylist() for e in first]
report["drain_when_empty"] = node.drain()
rest = []
while not node.ended:
    event = node.try_recv()
    if event is None:
        time.sleep(0.01)
        continue
    rest.append((event["type"], event["id"]))
report["rest"] = rest
report["try_recv_after_end"] = node.try_recv()
report["empty_after_end"] = node.is_empty()
try:
    node.drain()
    report["drain_after_end"] = "returned"
except RuntimeError as exc:
    report["drain_after_end"] = f"{type(exc).__name__}: {exc}"
save("drainer", report)
