"""Tries sends that no receiver could decode or that break the metadata rules, records what
each raised, then sends one good frame (see tests/test_hostile.py)."""

import numpy as np
from frames import fill
from report import report

from pinflow import Node

SHAPE = (64, 64, 4)


def nested(depth: int) -> dict:
    root: dict = {}
    level = root
    for _ in range(depth):
        level["a"] = {}
        level = level["a"]
    return root


def main() -> None:
    node = Node()

    def loan(shape: object, dtype: object) -> None:
        with node.output_buffer("frames", shape, dtype):
            pass

    cases = {
        "longdouble": lambda: node.send_output("frames", np.zeros(4, np.longdouble)),
        "clongdouble": lambda: node.send_output("frames", np.zeros(4, np.clongdouble)),
        "longdouble_loan": lambda: loan(4, np.longdouble),
        "huge_shape_loan": lambda: loan((2**32, 2**32), np.uint8),
        "deep_metadata": lambda: node.send_output("frames", b"x", metadata=nested(5000)),
        "int_key": lambda: node.send_output("frames", b"x", metadata={1: "a"}),
        "nested_int_key": lambda: node.send_output("frames", b"x", metadata={"a": [{2: "b"}]}),
        "big_metadata": lambda: node.send_output("frames", b"x",
                                                 metadata={"blob": "x" * (64 << 20)}),
    }
    outcome = {}
    for name, send in cases.items():
        try:
            send()
        except Exception as exc:
            outcome[name] = [type(exc).__name__, str(exc)[:300]]
        else:
            outcome[name] = None
    frame = np.empty(SHAPE, dtype=np.uint8)
    fill(frame, 0)
    node.send_output("frames", frame, metadata={"ok": True})
    report(node.id, {"outcome": outcome})


if __name__ == "__main__":
    main()
