"""Crashes once, then as the restarted process sends with send_output_raw and records what
dora's small methods say."""

import datetime as dt
import os
from pathlib import Path

import numpy as np
from results import save

from pinflow import Node

node = Node()
if not node.is_restart():
    raise SystemExit(3)  # the launcher starts it again (restart: on-failure)
report = {
    "dataflow_id": node.dataflow_id(), "run_id": node.run_id,
    "node_config": node.node_config(), "is_restart": node.is_restart(),
    "restart_count_call": node.restart_count(), "restart_count_attr": int(node.restart_count),
    "timestamp_aware": node.timestamp().tzinfo is dt.timezone.utc,
}
try:
    node.merge_external_events(iter([1, 2]))
except NotImplementedError as exc:
    report["merge"] = str(exc)
with node.send_output_raw("frames", 6, {"how": "with"}) as buffer:
    buffer[:] = np.arange(6, dtype=np.uint8)
sample = node.send_output_raw("frames", 4)
memoryview(sample.as_buffer())[:] = b"\x07\x08\x09\x0a"
report["manual_send"] = sample.send()
try:
    sample.send()
except Exception as exc:
    report["second_send"] = type(exc).__name__
try:
    with node.send_output_raw("frames", 3) as buffer:
        buffer[:] = 1
        raise KeyError("not sent")
except KeyError:
    report["discarded"] = True
save("raw", report)
Path(os.environ["PINFLOW_TEST_RESULTS"], "raw.done").touch()
