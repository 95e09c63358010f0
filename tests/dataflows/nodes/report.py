"""Helpers for test nodes: write what a node saw to $PINFLOW_TEST_RESULTS/<node>.json."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def report(node_id: str, data: dict[str, Any]) -> None:
    folder = Path(os.environ["PINFLOW_TEST_RESULTS"])
    tmp = folder / f".{node_id}.json.tmp"
    tmp.write_text(json.dumps({"pid": os.getpid(), **data}))
    tmp.replace(folder / f"{node_id}.json")


if os.environ.get("REPORT_PID") == "1" and "PINFLOW_NODE" in os.environ:
    # Tests that kill a node need its pid before it reports anything else.
    _node_id = json.loads(os.environ["PINFLOW_NODE"])["node"]["id"]
    _pid_file = Path(os.environ["PINFLOW_TEST_RESULTS"]) / f"{_node_id}.pid"
    _pid_file.with_suffix(".tmp").write_text(str(os.getpid()))
    _pid_file.with_suffix(".tmp").replace(_pid_file)
