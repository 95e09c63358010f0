"""Shared fixtures: run real dataflows in subprocesses and guard against leftovers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parent.parent
DATAFLOWS = Path(__file__).resolve().parent / "dataflows"
SHM = Path("/dev/shm")


def _pinflow_shm() -> set[str]:
    return {p.name for p in SHM.glob("pinflow-*")}


@pytest.fixture(autouse=True)
def no_shm_leftovers() -> Iterator[None]:
    """Fail any test that leaves /dev/shm/pinflow-* files behind."""
    before = _pinflow_shm()
    yield
    left = _pinflow_shm() - before
    for name in left:
        (SHM / name).unlink(missing_ok=True)
    assert not left, f"test left shared-memory files behind: {sorted(left)}"


@dataclass
class Run:
    """A finished ``pinflow run`` subprocess and what its nodes reported."""

    returncode: int
    stdout: str
    stderr: str
    results: Path

    def result(self, node_id: str) -> dict:
        """The JSON a test node wrote to $PINFLOW_TEST_RESULTS/<node>.json."""
        return json.loads((self.results / f"{node_id}.json").read_text())

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def _run(args: list[str], tmp_path: Path, timeout: float, env: dict[str, str] | None) -> Run:
    results = tmp_path / "results"
    results.mkdir(exist_ok=True)
    full_env = {**os.environ, "PINFLOW_TEST_RESULTS": str(results), **(env or {})}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pinflow", *args], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=full_env, cwd=tmp_path, start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        out, err = proc.communicate()
        pytest.fail(f"pinflow {' '.join(args)} did not finish in {timeout}s:\n{out}\n{err}")
    return Run(proc.returncode, out, err, results)


@pytest.fixture
def pinflow(tmp_path: Path) -> Callable[..., Run]:
    """Run ``python -m pinflow ARGS`` with a timeout; tests/dataflows/ names resolve."""

    def run(*args: str, timeout: float = 60, env: dict[str, str] | None = None) -> Run:
        resolved = [str(DATAFLOWS / a) if a.endswith(".yml") and "/" not in a else a
                    for a in args]
        if resolved and resolved[0] == "run" and "--log-dir" not in resolved:
            resolved += ["--log-dir", str(tmp_path / "logs")]
        return _run(resolved, tmp_path, timeout, env)

    return run


def assert_no_orphans(pids: list[int]) -> None:
    alive = [p for p in pids if psutil.pid_exists(p)
             and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"node processes still alive: {alive}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Real-GPU tests (``@pytest.mark.gpu``) run only where CUDA and a CUDA torch work."""
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items:
        return
    from pinflow.transport import cuda

    reason = cuda.unavailable_reason()
    if reason is None:
        try:
            import torch
        except ModuleNotFoundError:
            reason = "torch is not installed"
        else:
            if not torch.cuda.is_available():
                reason = f"torch {torch.__version__} has no CUDA device"
    if reason is not None:
        skip = pytest.mark.skip(reason=f"needs a CUDA GPU: {reason}")
        for item in gpu_items:
            item.add_marker(skip)
