"""The machine-wide budget for pinned pools, checked when a pool is created.

Page-locked memory cannot be swapped or reclaimed, so a pipeline that pins a fresh buffer
per batch dies once the machine runs out of it, hundreds of batches in. pinflow pins only
fixed pools, and refuses, up front and with names and sizes, any pool that would take the
machine past its budget.
The default budget is a quarter of physical RAM; ``PINFLOW_PINNED_BUDGET`` (bytes, or
'8GiB') or the dataflow's ``pinned_budget`` override it. Pinned pools are found by name in
the shared-memory folder (``*.pinned``), so every live run of this user on the machine counts,
not just this one; see :func:`pinned_use` for what is not counted.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

import psutil

from pinflow.errors import PinnedBudgetExceeded
from pinflow.spec.units import mib, size_from_env
from pinflow.transport import segment
from pinflow.transport.liveness import run_is_live

BUDGET_ENV = "PINFLOW_PINNED_BUDGET"
DEFAULT_FRACTION = 0.25


def budget_bytes(override: int | None = None) -> int:
    """The budget in force: the dataflow's value, else the env var, else RAM / 4."""
    if override is not None:
        return override
    from_env = size_from_env(BUDGET_ENV)
    if from_env is not None:
        return from_env
    return int(psutil.virtual_memory().total * DEFAULT_FRACTION)


@dataclass
class PinnedUse:
    """What counts against the budget, and what was looked at but not counted."""

    counted: dict[str, int] = field(default_factory=dict)
    """Pinned pools of live runs of this user: name -> bytes allocated to them."""
    ignored: int = 0
    """Files that look like pinned pools but are not (another user's, a dead run's,
    a name that is not a pool's): they cannot take pinned memory from a run."""

    @property
    def total(self) -> int:
        return sum(self.counted.values())


def pinned_use() -> PinnedUse:
    """The pinned pools on this machine that really hold memory for a live run.

    Only files named like a pool, owned by this user, of a run whose launcher holds its lock,
    count, and by the blocks allocated to them (``st_blocks``), not their size: a sparse
    ``truncate -s 1T`` file anyone can create, or a dead run's pool, blocks nothing.
    """
    use = PinnedUse()
    live: dict[str, bool] = {}
    for path in segment.shm_dir().glob(f"{segment.PREFIX}*{segment.PINNED_SUFFIX}"):
        parsed = segment.parse_segment_name(path.name)
        try:
            st = path.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        if parsed is None or not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid():
            use.ignored += 1
            continue
        run_id = parsed[0]
        if run_id not in live:
            live[run_id] = run_is_live(run_id)
        if not live[run_id]:
            use.ignored += 1
            continue
        use.counted[path.name] = st.st_blocks * 512
    return use


def pinned_segments() -> dict[str, int]:
    """Pinned pools that count against the budget: name -> bytes allocated."""
    return pinned_use().counted


def check(new: dict[str, int], override: int | None = None) -> None:
    """Raise ``PinnedBudgetExceeded`` if pools ``new`` (label -> bytes) do not fit."""
    budget = budget_bytes(override)
    use = pinned_use()
    total = use.total + sum(new.values())
    if total <= budget:
        return
    lines = [f"pinned pools would use {mib(total)} but the pinned budget is {mib(budget)}:"]
    lines += [f"  new      {label}: {mib(size)}" for label, size in new.items()]
    lines += [f"  existing {name}: {mib(size)} (a pool of a live run)"
              for name, size in use.counted.items()]
    if use.ignored:
        lines.append(f"  (not counted: {use.ignored} other file(s) in {segment.shm_dir()} "
                     "that are not live pinned pools of yours)")
    lines.append(f"Lower `slots`/`slot_bytes` of pinned outputs, or raise the budget with "
                 f"`pinned_budget:` in the dataflow or {BUDGET_ENV}.")
    raise PinnedBudgetExceeded("\n".join(lines))
