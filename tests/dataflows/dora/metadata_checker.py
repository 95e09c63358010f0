"""Records the metadata it receives, with the Python type of every value."""

import datetime as dt
import math

from results import save

from pinflow import Node


def describe(value):
    if isinstance(value, dt.datetime):
        return {"type": "datetime", "iso": value.isoformat()}
    if isinstance(value, float) and math.isnan(value):
        return {"type": "float", "repr": "nan"}
    if isinstance(value, dict):
        return {"type": "dict", "items": {k: describe(v) for k, v in value.items()}}
    if isinstance(value, list):
        return {"type": "list", "items": [describe(v) for v in value]}
    return {"type": type(value).__name__, "repr": repr(value)}


node = Node()
got: dict[str, list] = {}
for event in node:
    if event["type"] == "INPUT":
        got.setdefault(event["id"], []).append(
            {key: describe(value) for key, value in event["metadata"].items()})
save("checker", got)
