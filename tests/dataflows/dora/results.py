"""Test helper for the dora-style nodes: write what a node saw to
$PINFLOW_TEST_RESULTS/<name>.json (the suite's convention; see tests/conftest.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def save(name: str, data: dict[str, Any]) -> None:
    folder = Path(os.environ["PINFLOW_TEST_RESULTS"])
    tmp = folder / f".{name}.json.tmp"
    tmp.write_text(json.dumps(data, default=str))
    tmp.replace(folder / f"{name}.json")
