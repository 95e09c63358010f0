"""python-async's receiver: node.next on the event loop's default executor."""

import asyncio

from results import save

from pinflow import Node


async def main() -> None:
    node = Node()
    loop = asyncio.get_running_loop()
    values, stop = [], None
    while True:
        event = await loop.run_in_executor(None, node.next)
        if event is None:
            break
        if event["type"] == "INPUT":
            values += event["value"].to_pylist()
        elif event["type"] == "STOP":
            stop = event["id"]
    save("executor", {"values": values, "stop": stop})


asyncio.run(main())
