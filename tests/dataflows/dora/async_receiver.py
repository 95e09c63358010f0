"""python-recv-async's receiver, plus the cases it does not show: a timeout, a cancelled
wait that must not lose the event it was waiting for."""

import asyncio

import pyarrow as pa
from results import save

from pinflow import Node


async def main() -> None:
    node = Node()
    report = {"values": [], "errors": [], "cancelled": 0}
    first = await node.recv_async(timeout=0.05)  # before the first message: a timeout
    report["first"] = {k: first[k] for k in sorted(first) if k != "value"}
    while True:
        try:
            # Too short for the gap before 10: cancelled, and 10 must still arrive below.
            event = await asyncio.wait_for(node.recv_async(), timeout=0.3)
        except asyncio.TimeoutError:
            report["cancelled"] += 1
            continue
        if event is None:
            break
        if event["type"] == "INPUT":
            value = event["value"].to_pylist()
            report["values"] += value
            node.send_output("echo", pa.array(value))
        elif event["type"] == "ERROR":
            report["errors"].append(event["error"])
        elif event["type"] == "STOP":
            report["stop"] = event["id"]
    report["after_end"] = await node.recv_async(timeout=0.05)
    save("async-receiver", report)


asyncio.run(main())
