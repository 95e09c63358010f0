"""Sends metadata as dora nodes write it: numpy scalars, bytes, datetimes, tuples."""

import datetime as dt
import enum

import numpy as np
import pyarrow as pa

from pinflow import Node

SENT_AT = dt.datetime(2024, 5, 17, 12, 30, 15, 123456, tzinfo=dt.timezone.utc)


class Mode(enum.IntEnum):
    FAST = 2


node = Node()
node.send_output("out", pa.array([1]), {
    "i64": np.int64(5), "f32": np.float32(1.5), "flag": np.bool_(True), "f64": np.float64(2.25),
    "raw": b"ab", "aware": SENT_AT, "naive": SENT_AT.astimezone().replace(tzinfo=None),
    "pair": (1, 2), "empty": [], "words": ["a"], "nested": {"k": 1, "when": SENT_AT},
    "nothing": None, "nan": float("nan"), "mode": Mode.FAST, "array": np.arange(3),
    "odd": {1, 2}, "odd_again": {3},
})
node.send_output("out", pa.array([2]), {"timestamp": SENT_AT, "odd": {4}})
