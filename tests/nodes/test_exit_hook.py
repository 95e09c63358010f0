"""Why a node needs ``before_threads_join``: the interpreter joins non-daemon threads (zenoh's
callback threads are such) before ``atexit`` runs, so only a hook that runs before that join
can close what keeps them alive."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROGRAM = """
import atexit, sys, threading
from pinflow.nodes.exit_hook import before_threads_join
released = threading.Event()
threading.Thread(target=released.wait, name="like-a-zenoh-callback-thread").start()
if sys.argv[1] == "hook":
    before_threads_join(lambda: (print("hook ran", flush=True), released.set()))
else:
    atexit.register(released.set)  # runs only after the join: too late
print("main returns", flush=True)
"""


def test_the_hook_runs_before_the_interpreter_joins_non_daemon_threads() -> None:
    done = subprocess.run([sys.executable, "-c", PROGRAM, "hook"], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["main returns", "hook ran"]


def test_atexit_alone_would_wait_forever() -> None:
    process = subprocess.Popen([sys.executable, "-c", PROGRAM, "atexit"],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "main returns\n"
        with pytest.raises(subprocess.TimeoutExpired):
            process.wait(timeout=2)  # it would never exit; 2 s only bounds the test
    finally:
        process.kill()
        process.wait()
