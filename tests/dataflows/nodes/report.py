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
