"""Records every event's shape, as a dora node would see it, and runs its STOP cleanup."""

from results import save

from pinflow import Node

node = Node(node_id="receiver", daemon_port=6012)  # dora's keywords; the port means nothing here
seen, values, cleanup = [], [], None
for event in node:
    seen.append({"type": event["type"], "id": event["id"], "kind": event["kind"],
                 "keys": sorted(event)})
    if event["type"] == "INPUT":
        values.append(event["value"].to_pylist())
        stamp = event["metadata"]["timestamp"]
        seen[-1]["timestamp_utc"] = stamp.utcoffset().total_seconds() == 0
    elif event["type"] == "STOP":
        cleanup = event["id"]  # dora nodes clean up here; pinflow used to end before it
save("receiver", {"events": seen, "values": values, "cleanup": cleanup,
                  "after_loop": node.next(timeout=0.1), "ended": node.ended})
