"""Fixtures of the transport tests."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from pinflow.transport import segment as seg_mod
from pinflow.transport.cleanup import RunLock


@pytest.fixture
def run_id() -> Iterator[str]:
    """A fresh run id, locked like a launcher would (so no cleaner removes our files)."""
    rid = "t" + secrets.token_hex(5)
    lock = RunLock(rid)
    lock.acquire()
    yield rid
    left = sorted(p.name for p in seg_mod.shm_dir().glob(f"pinflow-{rid}.*") if p != lock.path)
    lock.release()
    assert left == [], f"test left segments behind: {left}"
    assert list(seg_mod.shm_dir().glob(f"pinflow-{rid}*")) == []
