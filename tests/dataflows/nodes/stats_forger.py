"""Publishes statistics reports no reader can use, on its own stats key and on its peers',
until its stream ends: JSON nested 100,000 deep, bytes that are no JSON, and JSON of the
wrong shape. Reaches into its own node's session on purpose: it plays a peer gone wrong."""

import json

from report import report

from pinflow import Node

DEEP = b"[" * 100_000 + b"]" * 100_000


def junk(node_id: str) -> list[bytes]:
    return [
        DEEP,
        b'{"node": ' + DEEP + b"}",
        b"\xff not json",
        b"[1, 2]",
        json.dumps({"node": node_id, "inputs": [1]}).encode(),
        json.dumps({"node": node_id, "inputs": {"x": {"source": 5}},
                    "outputs": {"y": {"pool": 7}}, "waiting_frac": "all"}).encode(),
    ]


def main() -> None:
    node = Node()
    session, root = node._session, f"pinflow/{node.run_id}/stats"
    published = 0
    for event in node:
        if event["type"] != "INPUT":
            continue
        for target in ("counter", "recorder", node.id):
            for body in junk(target):
                session.put(f"{root}/{target}", body)
                published += 1
    report(node.id, {"published": published})


if __name__ == "__main__":
    main()
