"""Records what the dynamic node forwards; its input stays open while the viewer is away."""

import os

from results import save

from pinflow import Node

node = Node()
seen, events = [], []
for event in node:
    events.append((event["type"], event["id"]))
    if event["type"] == "INPUT":
        seen += event["value"].to_pylist()
save("sink", {"pid": os.getpid(), "seen": seen, "last": events[-1] if events else None,
              "closed": [e for e in events if e[0] == "INPUT_CLOSED"]})
