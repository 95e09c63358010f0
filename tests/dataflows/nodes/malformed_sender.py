"""Sends a real frame, then messages no receiver can decode (each counted as malformed by the
consumer), a release no producer can parse (counted by this node), then a real frame.
Reaches into its own node's channel and link on purpose: it plays a peer gone wrong, one
whose link is trusted (it holds the pair's key), so only the frames themselves are refused."""

import json
import time

import msgspec
import numpy as np
import pyarrow as pa
from frames import fill
from report import report

from pinflow import Node

SHAPE = (64, 64, 4)
DATA = 4
"""The tag of a data frame (``pinflow.protocol.frames.Data``): ``[4, seq, sent_ns, layout,
metadata JSON, slot]``."""


def nd(dt: str, sh: object) -> dict:
    return {"k": "nd", "dt": dt, "sh": sh, "src": "numpy"}


ARROW = {"k": "arrow", "src": "arrow"}


def header(**fields: object) -> bytes:
    """A data frame's header (inline), with ``fields`` replaced; built as raw msgpack so it
    can hold what no sender would write."""
    body = {"s": 1, "t": time.time_ns(), "l": nd("|u1", [4]), "m": b"", "d": None}
    body.update(fields)
    return msgspec.msgpack.encode([DATA, body["s"], body["t"], body["l"], body["m"], body["d"]])


def deep(depth: int) -> str:
    return "[" * depth + "]" * depth


def bad_offsets_ipc() -> bytes:
    """A well-formed IPC stream whose string offsets point far outside its data buffer."""
    batch = pa.record_batch([pa.array(["abc", "d"])], names=["v"])
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    good = np.array([0, 3, 4], dtype=np.int32).tobytes()
    bad = np.array([0, 3, 1 << 30], dtype=np.int32).tobytes()
    stream = sink.getvalue().to_pybytes()
    assert stream.count(good) == 1
    return stream.replace(good, bad)


def inline_attacks() -> list[tuple[bytes, bytes]]:
    four = b"\0" * 4
    return [
        (np.zeros(4, np.longdouble).tobytes(), header(l=nd("<f16", [4]))),   # no Arrow type
        (b"\0" * 64, header(l=nd("g", [4]))),                                # longdouble code
        (b"\0" * 16, header(l=nd("<c8", [2]))),                              # complex
        (b"garbage!", header(l=ARROW)),                                      # not IPC at all
        (bad_offsets_ipc(), header(l=ARROW)),                                # IPC, bad offsets
        (four, header(t=2**64 - 1)),                                         # time overflow
        (four, header(s=-1)),                                                # negative seq
        (four, header(s=True)),                                              # bool seq
        (b"", header(l=nd("|u1", [2**32, 2**32]))),                          # int64 wraps to 0
        (b"\0" * 12, header(l=nd("|u1", "12"))),                             # shape a string
        (four, header(l=nd("|u1", [4.0]))),                                  # float dimension
        (four, header(l=nd("|u1", [-2, -2]))),                               # negative dims
        (four, header(l=nd("|u1", [1] * 40 + [4]))),                         # too many dims
        (four, header(l={"k": "nd", "sh": [4]})),                            # no dtype
        (four, header(l={"k": "video"})),                                    # unknown layout
        (four, header(m=b'{"a":' + deep(5000).encode() + b"}")),             # deep metadata
        (four, header(m=b'{"a":' + deep(100).encode() + b"}")),              # too deep
        (four, header(m=json.dumps({"blob": "x" * (1 << 20)}).encode())),    # header too big
        (four, header(m=b"[1, 2]")),                                         # not a mapping
        (four, b"\xff\xfe"),                                                 # not msgpack
        (four, msgspec.msgpack.encode([DATA, 1, 1, nd("|u1", [4]), b"", None, "extra"])),
        (four, b""),                                                         # no header
    ]


def main() -> None:
    node = Node()
    channel = node._outputs["frames"]
    frame = np.empty(SHAPE, dtype=np.uint8)
    fill(frame, 0)
    node.send_output("frames", frame)
    (peer,) = channel._links._peers.values()
    attacks = inline_attacks()
    for payload, attachment in attacks:
        assert peer.link.send(attachment, payload)
    # Real slots announced with layouts no receiver can decode: refused, and given back.
    for layout, content in ((nd("<f16", [1024]), b""), (ARROW, b"garbage")):
        loan = channel.loan(frame.nbytes)
        loan.array[: len(content)] = np.frombuffer(content, dtype=np.uint8)
        channel.publish(loan, layout, None)
        attacks.append((b"", b""))
    # A release nested too deep for any JSON parser, sent where releases arrive.
    nested = ('{"c":"consumer","seg":"x","r":' + deep(5000) + "}").encode()
    root = f"pinflow/{node.run_id}/release/producer/frames"
    for key in (root, f"{root}/consumer"):
        node._session.put(key, nested, attachment=b"\0" * 16)
    fill(frame, 1)
    node.send_output("frames", frame)
    deadline = time.monotonic() + 10
    while node.stats()["malformed"] < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    report(node.id, {"attacks": len(attacks), "malformed": node.stats()["malformed"]})


if __name__ == "__main__":
    main()
