"""Sends one real frame, then forged descriptors on its own link to the consumer, then a real
frame.

Consumers must refuse every forged message (counted as malformed) and get both real frames.
Reaches into the node's private channel on purpose: it plays an attacker inside the run, one
that holds the pair's key, so its link is trusted and only the frames themselves can be
refused.
"""

import msgspec
import numpy as np
from frames import fill
from report import report

from pinflow import Node
from pinflow.protocol import frames

SHAPE = (64, 64, 4)


def forged(real: frames.Data, run_id: str) -> list[bytes]:
    slot = real.slot
    assert slot is not None

    def with_slot(**changes: object) -> bytes:
        return frames.encode(msgspec.structs.replace(
            real, slot=msgspec.structs.replace(slot, **changes)))

    seg = slot.segment
    other_run = seg.replace(f"pinflow-{run_id}.", "pinflow-0123456789ab.")
    as_list = msgspec.msgpack.decode(frames.encode(real))
    wrong_type = list(as_list)
    wrong_type[5] = [seg, slot.index, slot.offset, slot.length, str(slot.generation)]
    unknown_kind = list(as_list)
    unknown_kind[0] = 9
    layout_lie = msgspec.structs.replace(
        real, layout=msgspec.structs.replace(real.layout, sh=[1000, 1000, 4]))
    return [
        with_slot(generation=slot.generation + 7),           # wrong generation
        with_slot(generation=slot.generation - 1),           # stale generation
        with_slot(offset=10**12),                            # offset outside the segment
        with_slot(offset=slot.offset + 4096),                # offset not at a slot start
        with_slot(length=10**9),                             # longer than a slot
        with_slot(index=999),                                # no such slot
        with_slot(segment=other_run),                        # another run's segment
        with_slot(segment="../../etc/passwd"),               # path traversal
        with_slot(segment=seg.replace(".producer.", ".consumer.")),  # another node's name
        msgspec.msgpack.encode(wrong_type),                  # wrong type
        frames.encode(layout_lie),                           # layout larger than the slot
        b"\xc1 not msgpack",
        msgspec.msgpack.encode(unknown_kind),                # unknown kind of frame
    ]


def main() -> None:
    node = Node()
    channel = node._outputs["frames"]
    frame = np.empty(SHAPE, dtype=np.uint8)
    fill(frame, 0)
    (peer,) = channel._links._peers.values()
    link = peer.link
    captured = {}
    original_send = link.send

    def capture(header: bytes, *args, **kwargs) -> bool:
        message = frames.decode_to_consumer(header)
        if isinstance(message, frames.Data):
            captured["data"] = message
        return original_send(header, *args, **kwargs)

    link.send = capture
    node.send_output("frames", frame)
    link.send = original_send
    attacks = forged(captured["data"], node.run_id)
    for attack in attacks:
        link.send(attack)
    fill(frame, 1)
    node.send_output("frames", frame)
    report(node.id, {"attacks": len(attacks)})


if __name__ == "__main__":
    main()
