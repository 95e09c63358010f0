"""Records the raw samples it gets: their Arrow type and bytes."""

from results import save

from pinflow import Node

node = Node()
samples = []
for event in node:
    if event["type"] == "INPUT":
        samples.append({"type": str(event["value"].type), "values": event["value"].to_pylist(),
                        "how": event["metadata"].get("how")})
        if len(samples) == 2:
            break
save("sink", {"samples": samples})
