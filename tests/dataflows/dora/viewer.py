"""A dynamic node: started by hand (no PINFLOW_NODE), it joins the running dataflow as
`viewer` (or the id in argv[1]), forwards WANT counts to `seen`, then leaves (or stays until
STOP). Its results go to $PINFLOW_TEST_RESULTS/<TAG>.json."""

import os
import sys

from results import save

from pinflow import Node

name = sys.argv[1] if len(sys.argv) > 1 else "viewer"
tag = os.environ.get("TAG", name)
try:
    node = Node(name)
except Exception as exc:
    save(tag, {"error": f"{type(exc).__name__}: {exc}"})
    raise SystemExit(2) from None
save(f"{tag}.joined", {"id": node.id})
want = int(os.environ.get("WANT", "10"))
seen, stop = [], None
for event in node:
    if event["type"] == "INPUT":
        seen += event["value"].to_pylist()
        node.send_output("seen", event["value"])
        if len(seen) >= want:
            break
    elif event["type"] == "STOP":
        stop = event["id"]
save(tag, {"seen": seen, "id": node.id, "run_id": node.run_id, "stop": stop})
