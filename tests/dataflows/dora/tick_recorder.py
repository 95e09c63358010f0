"""Records its timer ticks as a dora node sees them: empty value, a datetime timestamp."""

import datetime as dt

import pyarrow as pa
from results import save

from pinflow import Node

node = Node()
ticks: dict[str, list] = {}
stop = None
for event in node:
    if event["type"] == "INPUT":
        stamp = event["metadata"]["timestamp"]
        now = dt.datetime.now(dt.timezone.utc)
        ticks.setdefault(event["id"], []).append({
            "null_array": isinstance(event["value"], pa.NullArray),
            "length": len(event["value"]),
            "aware_utc": stamp.tzinfo is not None and stamp.utcoffset() == dt.timedelta(0),
            "age_s": (now - stamp).total_seconds(),
            "stamp_us": int(stamp.timestamp() * 1_000_000),
            "sent_us": event["sent_ns"] // 1000,
        })
    elif event["type"] == "STOP":
        stop = event["id"]
save("ticker", {"ticks": ticks, "stop": stop})
