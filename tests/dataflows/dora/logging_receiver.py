"""Logs what it receives at every level, and the STOP event as dora prints it."""

import logging

from results import save

from pinflow import Node

log = logging.getLogger("receiver.detail")
node = Node()
messages = transformed = 0
for event in node:
    if event["type"] == "INPUT" and event["id"] == "message":
        messages += 1
        logging.info("Received message: %s", event["value"].to_pylist())
    elif event["type"] == "INPUT":
        transformed += 1
        log.info("Received transformed: %s", event["value"].to_pylist())
    elif event["type"] == "STOP":
        logging.info("Receiver stopping after receiving event: %s",
                     {k: event[k] for k in ("kind", "id", "type")})
logging.debug("a debug line nobody asked for")
logging.warning("a warning")
print("a plain print")
node.log_info("log_info line")
node.log("warn", "dora-order warn line")
node.log("pinflow-order error line", level="error", k=1)
logging.info("Receiver finished")
save("receiver", {"messages": messages, "transformed": transformed})
