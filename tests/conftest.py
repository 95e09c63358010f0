"""Shared fixtures: run real dataflows in subprocesses and guard against leftovers.

The test session keeps everything it creates in folders of its own, set here before any
pinflow module is imported and inherited by every process a test starts:
``PINFLOW_SHM_DIR`` (segments, run locks and node liveness files, a tmpfs folder under
/dev/shm) and ``TMPDIR`` (the runs' socket folders). So the suite can run beside a live
``pinflow run``, or beside another test session, without seeing, judging or deleting anything
of theirs (``tests/test_leftovers.py`` proves it against a real run). The only thing the
session creates in the real /dev/shm is its own folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parent.parent
DATAFLOWS = Path(__file__).resolve().parent / "dataflows"

SHM = Path("/dev/shm") / f"pftests-{os.getpid()}-{secrets.token_hex(3)}"
"""This session's shared-memory folder (tmpfs, like /dev/shm itself)."""
SHM.mkdir(mode=0o700)
os.environ["PINFLOW_SHM_DIR"] = str(SHM)
_TMP = Path(tempfile.mkdtemp(prefix="pftests-"))
os.environ["TMPDIR"] = str(_TMP)
tempfile.tempdir = None  # gettempdir() caches; make it see TMPDIR


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remove the session's folders; anything still in the shm folder is reported."""
    left = sorted(p.name for p in SHM.iterdir()) if SHM.exists() else []
    shutil.rmtree(SHM, ignore_errors=True)
    shutil.rmtree(_TMP, ignore_errors=True)
    if left:
        print(f"\ntest session left shared-memory files behind: {left}", file=sys.stderr)
        session.exitstatus = 1


def _session_files() -> set[Path]:
    """What runs of this session leave when they do not clean up: files in the session's
    shared-memory folder and run folders in its socket folder (``<TMPDIR>/pinflow-<uid>``)."""
    runs = Path(tempfile.gettempdir()) / f"pinflow-{os.getuid()}"
    found = set(SHM.iterdir())
    if runs.is_dir():
        found |= set(runs.iterdir())
    return found


@contextlib.contextmanager
def leftover_guard() -> Iterator[None]:
    """Fail if the block leaves shared-memory files or run socket folders of this session
    behind (they are removed, so one failure does not spill into the next test). It looks
    only into the session's own folders: a live run elsewhere is never seen, let alone
    touched."""
    before = _session_files()
    yield
    left = _session_files() - before
    for path in left:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    assert not left, f"test left files behind: {sorted(str(p) for p in left)}"


@pytest.fixture(autouse=True)
def no_shm_leftovers() -> Iterator[None]:
    """Fail any test that leaves files in the session's shared-memory or socket folders."""
    with leftover_guard():
        yield


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


class BackgroundRun:
    """A ``pinflow run`` left running while a test works beside it.

    It runs in its own process group; its output is read on a thread (so the launcher never
    blocks on a full pipe) into ``lines``. Leaving the ``with`` block stops it the way a user
    would, SIGINT, so it removes its own files; SIGKILL only if that does not end it.
    """

    def __init__(self, flow: Path, tmp_path: Path, *, stop_after: float,
                 env: dict[str, str] | None = None) -> None:
        self.results = tmp_path / "results"
        self.results.mkdir(exist_ok=True)
        self.env = {**os.environ, "PINFLOW_TEST_RESULTS": str(self.results), **(env or {})}
        self.lines: list[str] = []
        self.run_id = ""
        self._started = threading.Event()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pinflow", "run", str(flow), "--stop-after",
             str(stop_after), "--log-dir", str(tmp_path / "logs")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
            env=self.env, start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            match = re.search(r"run (\w+) started", line)
            if match and not self._started.is_set():
                self.run_id = match.group(1)
                self._started.set()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_started(self, timeout: float = 60) -> str:
        """The run's id, once the launcher says every node is up."""
        assert self._started.wait(timeout), f"the run did not start:\n{self.output}"
        return self.run_id

    def wait(self, timeout: float) -> int:
        """The launcher's exit status, once it ended by itself."""
        returncode = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return returncode

    def stop(self, timeout: float = 30) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._reader.join(timeout=5)

    def __enter__(self) -> BackgroundRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def assert_no_orphans(pids: list[int]) -> None:
    alive = [p for p in pids if psutil.pid_exists(p)
             and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"node processes still alive: {alive}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Real-GPU tests (``@pytest.mark.gpu``) run only where CUDA and a CUDA torch work."""
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items:
        return
    from pinflow.transport import torch_cuda

    reason = torch_cuda.probe().reason
    if reason is not None:
        skip = pytest.mark.skip(reason=f"needs a CUDA GPU: {reason}")
        for item in gpu_items:
            item.add_marker(skip)
