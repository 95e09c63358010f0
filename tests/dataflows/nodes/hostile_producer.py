"""Sends one real frame, then forged descriptors on its own output key, then a real frame.

Consumers must refuse every forged message (counted as malformed) and get both real frames.
Reaches into the node's private channel on purpose: it plays an attacker inside the mesh.
"""

import copy
import json

import numpy as np
from frames import fill
from report import report

from pinflow import Node

SHAPE = (64, 64, 4)


def forged(real: dict, run_id: str) -> list[bytes]:
    def with_slot(**changes: object) -> bytes:
        header = copy.deepcopy(real)
        header["d"].update(changes)
        return json.dumps(header).encode()

    slot = real["d"]
    seg = slot["seg"]
    other_run = seg.replace(f"pinflow-{run_id}.", "pinflow-0123456789ab.")
    layout_lie = copy.deepcopy(real)
    layout_lie["l"]["sh"] = [1000, 1000, 4]
    return [
        with_slot(gen=slot["gen"] + 7),                      # wrong generation
        with_slot(gen=slot["gen"] - 1),                      # stale generation
        with_slot(off=10**12),                               # offset outside the segment
        with_slot(off=slot["off"] + 4096),                   # offset not at a slot start
        with_slot(len=10**9),                                # longer than a slot
        with_slot(idx=999),                                  # no such slot
        with_slot(seg=other_run),                            # another run's segment
        with_slot(seg="../../etc/passwd"),                   # path traversal
        with_slot(seg=seg.replace(".producer.", ".consumer.")),  # another node's name
        with_slot(gen="1"),                                  # wrong type
        json.dumps(layout_lie).encode(),                     # layout larger than the slot
        b"{not json",
        json.dumps({"v": 1, "k": "teleport", "s": 1, "t": 1}).encode(),
    ]


def main() -> None:
    node = Node()
    channel = node._outputs["frames"]
    publisher = channel._publisher
    frame = np.empty(SHAPE, dtype=np.uint8)
    fill(frame, 0)
    captured = {}
    original_put = publisher.put

    def capture(payload: bytes, attachment: bytes) -> None:
        captured["header"] = json.loads(attachment)
        original_put(payload, attachment=attachment)

    channel._publisher = type("Spy", (), {"put": staticmethod(capture),
                                           "undeclare": publisher.undeclare})()
    node.send_output("frames", frame)
    channel._publisher = publisher
    attacks = forged(captured["header"], node.run_id)
    for attack in attacks:
        publisher.put(b"", attachment=attack)
    fill(frame, 1)
    node.send_output("frames", frame)
    report(node.id, {"attacks": len(attacks)})


if __name__ == "__main__":
    main()
