"""The machine-wide budget for pinned pools, checked when a pool is created.

Page-locked memory cannot be swapped or reclaimed; seed 000's pipeline pinned a fresh
buffer per batch and died after ~361 batches. pinflow pins only fixed pools, and refuses,
up front and with names and sizes, any pool that would take the machine past its budget.
The default budget is a quarter of physical RAM; ``PINFLOW_PINNED_BUDGET`` (bytes, or
'8GiB') or the dataflow's ``pinned_budget`` override it. Pinned pools are found by name in
/dev/shm (``*.pinned``), so every run on the machine counts, not just this one.
"""

from __future__ import annotations

import os
import re

import psutil

from pinflow.errors import PinnedBudgetExceeded
from pinflow.transport import segment

BUDGET_ENV = "PINFLOW_PINNED_BUDGET"
DEFAULT_FRACTION = 0.25
_SIZE = re.compile(r"\s*(\d+)\s*(B|KiB|MiB|GiB|TiB)?\s*")
_UNITS = {None: 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}


def parse_size(text: str) -> int:
    match = _SIZE.fullmatch(text)
    if not match:
        raise ValueError(f"not a byte count: {text!r} (use e.g. 4294967296 or '4GiB')")
    return int(match.group(1)) * _UNITS[match.group(2)]


def budget_bytes(override: int | None = None) -> int:
    """The budget in force: the dataflow's value, else the env var, else RAM / 4."""
    if override is not None:
        return override
    raw = os.environ.get(BUDGET_ENV)
    if raw:
        return parse_size(raw)
    return int(psutil.virtual_memory().total * DEFAULT_FRACTION)


def pinned_segments() -> dict[str, int]:
    """Every pinned pool on this machine: name -> bytes."""
    found = {}
    for path in segment.shm_dir().glob(f"{segment.PREFIX}*{segment.PINNED_SUFFIX}"):
        try:
            found[path.name] = path.stat().st_size
        except FileNotFoundError:
            continue
    return found


def check(new: dict[str, int], override: int | None = None) -> None:
    """Raise ``PinnedBudgetExceeded`` if pools ``new`` (label -> bytes) do not fit."""
    budget = budget_bytes(override)
    existing = pinned_segments()
    total = sum(existing.values()) + sum(new.values())
    if total <= budget:
        return
    lines = [f"pinned pools would use {_mib(total)} but the pinned budget is {_mib(budget)}:"]
    lines += [f"  new      {label}: {_mib(size)}" for label, size in new.items()]
    lines += [f"  existing {name}: {_mib(size)}" for name, size in existing.items()]
    lines.append(f"Lower `slots`/`slot_bytes` of pinned outputs, or raise the budget with "
                 f"`pinned_budget:` in the dataflow or {BUDGET_ENV}.")
    raise PinnedBudgetExceeded("\n".join(lines))


def _mib(nbytes: int) -> str:
    return f"{nbytes / (1 << 20):.1f} MiB"
